-- name: purge_entries(older_than)$
-- Deletes trail entries written before `older_than`; returns how many.
WITH gone AS (DELETE FROM trail_entries WHERE at < :older_than RETURNING 1)
SELECT count(*) FROM gone;
