-- name: list_meetings_by_status(since, until, status, after_rank, after_start, after_id, page_size)
-- Returns up to page_size meetings grouped by status as clients see it (meeting_status():
-- scheduled, then completed, then cancelled; status_rank 0, 1, 2) and by start time within
-- each, optionally starting in [since, until) and of one status, after the keyset
-- (after_rank, after_start, after_id) when given: rows of {status_rank, start_time, id, meeting}.
SELECT r.status_rank, r.start_time, r.id, meeting_document(r.m) AS meeting
  FROM (SELECT m, m.start_time, m.id,
               CASE meeting_status(m) WHEN 'scheduled' THEN 0 WHEN 'completed' THEN 1 ELSE 2 END AS status_rank
          FROM meetings AS m
         WHERE (:since::timestamptz IS NULL OR m.start_time >= :since::timestamptz)
           AND (:until::timestamptz IS NULL OR m.start_time < :until::timestamptz)
           AND (:status::text IS NULL OR meeting_status(m) = :status::text)) AS r
 WHERE :after_start::timestamptz IS NULL
    OR (r.status_rank, r.start_time, r.id) > (:after_rank::int, :after_start::timestamptz, :after_id::uuid)
 ORDER BY r.status_rank, r.start_time, r.id
 LIMIT :page_size;
