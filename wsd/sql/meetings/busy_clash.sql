-- name: busy_clash(mailbox, start_time, end_time, except_id)^
-- Returns the first block of the mailbox overlapping [start_time, end_time) — a scheduled
-- meeting other than except_id, or a busy/tentative/oof event made in Outlook — as
-- {kind ('meeting' or 'outlook_event'), id, start_time, end_time}; no row when the time is
-- free. The same blocks busy_between gives get_available_slots, so slots and booking agree.
SELECT kind, id, start_time, end_time
  FROM (SELECT 'meeting' AS kind, id::text AS id, start_time, end_time
          FROM meetings
         WHERE mailbox = :mailbox AND status = 'scheduled'
           AND start_time < :end_time AND end_time > :start_time
           AND id IS DISTINCT FROM :except_id::uuid
        UNION ALL
        SELECT 'outlook_event', event_id, start_time, end_time
          FROM outlook_busy
         WHERE mailbox = :mailbox AND show_as IN ('busy', 'tentative', 'oof')
           AND start_time < :end_time AND end_time > :start_time) AS blocks
 ORDER BY start_time
 LIMIT 1;
