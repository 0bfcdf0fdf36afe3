-- name: lock_meeting(meeting_id)^
-- Returns {status, start_time, end_time, mailbox} of a meeting, locking it until the
-- transaction ends; no row for an unknown id.
SELECT status, start_time, end_time, mailbox FROM meetings WHERE id = :meeting_id FOR UPDATE;
