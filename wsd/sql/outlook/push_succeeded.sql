-- name: push_succeeded(meeting_id, pushed_version, event_id, change_key)$
-- Records that Outlook has the meeting as of pushed_version; returns the sync_status: synced,
-- or pending when the meeting changed again while it was being pushed.
UPDATE meetings
   SET outlook_event_id = coalesce(:event_id, outlook_event_id),
       outlook_change_key = coalesce(:change_key, outlook_change_key),
       synced_version = :pushed_version,
       sync_status = CASE WHEN sync_version = :pushed_version THEN 'synced' ELSE 'pending' END,
       sync_attempts = 0, last_error = NULL, last_synced_at = now(), next_attempt_at = now(),
       sync_claimed_until = NULL
 WHERE id = :meeting_id
RETURNING sync_status;
