-- name: busy_between(mailbox, since, until)
-- Returns the {start_time, end_time} blocks of the mailbox overlapping [since, until): its
-- scheduled meetings and the events made in Outlook itself (stored by the calendar sync).
SELECT start_time, end_time FROM meetings
 WHERE mailbox = :mailbox AND status = 'scheduled' AND start_time < :until AND end_time > :since
UNION ALL
SELECT start_time, end_time FROM outlook_busy
 WHERE mailbox = :mailbox AND show_as IN ('busy', 'tentative', 'oof')
   AND start_time < :until AND end_time > :since;
