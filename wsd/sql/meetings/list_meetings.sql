-- name: list_meetings(since, until, status, after_start, after_id, page_size)
-- Returns up to page_size meetings ordered by start time, optionally starting in
-- [since, until) and of one status (as clients see it: meeting_status()), after the keyset (after_start, after_id) when given:
-- rows of {start_time, id, meeting}.
SELECT m.start_time, m.id, meeting_document(m) AS meeting
  FROM meetings AS m
 WHERE (:since::timestamptz IS NULL OR m.start_time >= :since::timestamptz)
   AND (:until::timestamptz IS NULL OR m.start_time < :until::timestamptz)
   AND (:status::text IS NULL OR meeting_status(m) = :status::text)
   AND (:after_start::timestamptz IS NULL
        OR (m.start_time, m.id) > (:after_start::timestamptz, :after_id::uuid))
 ORDER BY m.start_time, m.id
 LIMIT :page_size;
