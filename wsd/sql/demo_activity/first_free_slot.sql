-- name: first_free_slot(mailbox, starts, minutes)$
-- Returns the first of the candidate starts (in array order) where a meeting of `minutes`
-- overlaps no scheduled meeting and no Outlook busy block of the mailbox; NULL when none is
-- free. Run under meetings.lock_mailbox so the answer holds until commit.
SELECT candidate.start_time
  FROM unnest(:starts::timestamptz[]) WITH ORDINALITY AS candidate(start_time, position)
 WHERE NOT EXISTS (
           SELECT 1 FROM meetings AS m
            WHERE m.mailbox = :mailbox AND m.status = 'scheduled'
              AND m.start_time < candidate.start_time + make_interval(mins => :minutes::integer)
              AND m.end_time > candidate.start_time)
   AND NOT EXISTS (
           SELECT 1 FROM outlook_busy AS b
            WHERE b.mailbox = :mailbox AND b.show_as IN ('busy', 'tentative', 'oof')
              AND b.start_time < candidate.start_time + make_interval(mins => :minutes::integer)
              AND b.end_time > candidate.start_time)
 ORDER BY candidate.position
 LIMIT 1;
