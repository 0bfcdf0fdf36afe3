-- name: outbox_metrics(mailbox)^
-- Returns {pending, failed, oldest_pending_seconds, last_success_at} for /metrics: meetings waiting for a push (from the partial index on unsynced meetings), how long the oldest pending one has waited since its last local change, and when the mailbox's last delta sync succeeded (NULL before the first).
SELECT count(*) FILTER (WHERE m.sync_status = 'pending') AS pending,
       count(*) FILTER (WHERE m.sync_status = 'failed') AS failed,
       coalesce(extract(epoch FROM now() - min(m.updated_at) FILTER (WHERE m.sync_status = 'pending')), 0)::float8
           AS oldest_pending_seconds,
       (SELECT s.last_success_at FROM outlook_sync_state AS s WHERE s.mailbox = :mailbox) AS last_success_at
  FROM meetings AS m
 WHERE m.sync_status IN ('pending', 'failed');
