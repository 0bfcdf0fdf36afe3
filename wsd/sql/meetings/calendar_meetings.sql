-- name: calendar_meetings(since, until)
-- Returns the meetings not cancelled starting in [since, until), ordered by start: rows of
-- {start_time, meeting}.
SELECT m.start_time, meeting_document(m) AS meeting
  FROM meetings AS m
 WHERE m.start_time >= :since AND m.start_time < :until AND m.status <> 'cancelled'
 ORDER BY m.start_time, m.id;
