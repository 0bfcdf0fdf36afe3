-- name: vanished_meetings(mailbox, since, until, seen_ids)
-- After a full sync of [since, until): returns ids of the mailbox's scheduled, synced
-- meetings in the window whose Outlook event was not seen (deleted in Outlook).
SELECT id FROM meetings
 WHERE mailbox = :mailbox AND status = 'scheduled' AND outlook_event_id IS NOT NULL
   AND sync_version = synced_version
   AND start_time < :until AND end_time > :since
   AND NOT (outlook_event_id = ANY (:seen_ids::text[]));
