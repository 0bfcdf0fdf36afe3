-- name: purge_keys(older_than)!
-- Forgets idempotency keys claimed before `older_than`.
DELETE FROM idempotency_keys WHERE created_at < :older_than;
