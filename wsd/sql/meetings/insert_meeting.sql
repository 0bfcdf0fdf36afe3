-- name: insert_meeting(lead_id, user_id, subject, start_time, end_time, attendee_email, mailbox, sync_status)$
-- Creates a scheduled meeting and returns its id; a meeting that Outlook must learn of
-- starts pending with one change to push.
INSERT INTO meetings (lead_id, user_id, subject, start_time, end_time, attendee_email, mailbox,
                      sync_status, sync_version)
VALUES (:lead_id, :user_id, :subject, :start_time, :end_time, :attendee_email, :mailbox,
        :sync_status, CASE WHEN :sync_status = 'pending' THEN 1 ELSE 0 END)
RETURNING id;
