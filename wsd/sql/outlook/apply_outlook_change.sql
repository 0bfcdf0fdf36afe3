-- name: apply_outlook_change(meeting_id, event_id, change_key, subject, start_time, end_time, status)!
-- Takes a change made in Outlook into the meeting without queueing a push back.
UPDATE meetings
   SET outlook_event_id = coalesce(:event_id, outlook_event_id),
       outlook_change_key = coalesce(:change_key, outlook_change_key),
       subject = coalesce(:subject, subject), start_time = coalesce(:start_time, start_time),
       end_time = coalesce(:end_time, end_time), status = coalesce(:status, status),
       updated_at = now(), last_synced_at = now()
 WHERE id = :meeting_id;
