-- name: claim_key(caller, action, key, payload_sha256)$
-- Claims an idempotency key for the running write; returns true when this request claimed
-- it, null when another request already holds it (waiting for that one to commit or roll back).
INSERT INTO idempotency_keys (caller, action, key, payload_sha256)
VALUES (:caller, :action, :key, :payload_sha256)
ON CONFLICT DO NOTHING
RETURNING true;
