-- name: forget_unseen_busy(mailbox, seen_ids)$
-- After a full sync: drops stored Outlook events that were not seen; returns how many.
WITH gone AS (
    DELETE FROM outlook_busy WHERE mailbox = :mailbox AND NOT (event_id = ANY (:seen_ids::text[]))
    RETURNING 1)
SELECT count(*) FROM gone;
