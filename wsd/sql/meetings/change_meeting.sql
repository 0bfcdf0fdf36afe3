-- name: change_meeting(meeting_id, subject, start_time, end_time, status, push)!
-- Sets the given fields (NULL keeps a field) and, when push, records one more change for
-- Outlook: the meeting is pending until the worker has pushed it.
UPDATE meetings
   SET subject = coalesce(:subject, subject),
       start_time = coalesce(:start_time, start_time),
       end_time = coalesce(:end_time, end_time),
       status = coalesce(:status, status),
       updated_at = now(),
       sync_version = sync_version + CASE WHEN :push THEN 1 ELSE 0 END,
       sync_status = CASE WHEN :push THEN 'pending' ELSE sync_status END,
       sync_attempts = CASE WHEN :push THEN 0 ELSE sync_attempts END,
       next_attempt_at = CASE WHEN :push THEN now() ELSE next_attempt_at END
 WHERE id = :meeting_id;
