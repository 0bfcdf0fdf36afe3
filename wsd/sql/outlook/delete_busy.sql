-- name: delete_busy(mailbox, event_id)$
-- Forgets an Outlook event that was deleted; returns whether there was one.
WITH gone AS (DELETE FROM outlook_busy WHERE mailbox = :mailbox AND event_id = :event_id RETURNING 1)
SELECT EXISTS (SELECT 1 FROM gone);
