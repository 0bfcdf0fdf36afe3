-- name: meeting_for_event(event_id, transaction_id)^
-- Returns {id, status, subject, start_time, end_time, has_local_changes} of the meeting an
-- Outlook event belongs to (by event id, or by the transactionId wsd gave it); no row for
-- an event made in Outlook itself.
SELECT id, status, subject, start_time, end_time, sync_version > synced_version AS has_local_changes,
       outlook_event_id
  FROM meetings
 WHERE outlook_event_id = :event_id OR id = :transaction_id::uuid
 ORDER BY (outlook_event_id = :event_id) DESC NULLS LAST
 LIMIT 1;
