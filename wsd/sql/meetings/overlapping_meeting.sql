-- name: overlapping_meeting(mailbox, start_time, end_time, except_id)^
-- Returns {id, start_time, end_time} of a scheduled meeting of the mailbox overlapping
-- [start_time, end_time), other than except_id; no row when the time is free.
SELECT id, start_time, end_time
  FROM meetings
 WHERE mailbox = :mailbox AND status = 'scheduled'
   AND start_time < :end_time AND end_time > :start_time
   AND id IS DISTINCT FROM :except_id::uuid
 ORDER BY start_time
 LIMIT 1;
