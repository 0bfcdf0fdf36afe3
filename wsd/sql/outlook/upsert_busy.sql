-- name: upsert_busy(mailbox, event_id, subject, start_time, end_time, show_as)$
-- Stores an event made in Outlook as busy time; returns 'created', 'updated' or 'unchanged'.
WITH previous AS (
    SELECT start_time, end_time, show_as, subject FROM outlook_busy
     WHERE mailbox = :mailbox AND event_id = :event_id
), stored AS (
    INSERT INTO outlook_busy (mailbox, event_id, subject, start_time, end_time, show_as)
    VALUES (:mailbox, :event_id, :subject, :start_time, :end_time, :show_as)
    ON CONFLICT (mailbox, event_id) DO UPDATE
       SET subject = EXCLUDED.subject, start_time = EXCLUDED.start_time,
           end_time = EXCLUDED.end_time, show_as = EXCLUDED.show_as
)
SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM previous) THEN 'created'
            WHEN EXISTS (SELECT 1 FROM previous
                          WHERE (start_time, end_time, show_as, subject)
                                IS NOT DISTINCT FROM (:start_time, :end_time, :show_as, :subject))
            THEN 'unchanged' ELSE 'updated' END;
