-- name: due_meetings(include_failed, batch)
-- Returns ids of meetings whose push is due (pending, past next_attempt_at; failed ones
-- too when include_failed) and that nobody holds, the most overdue first.
SELECT id FROM meetings
 WHERE (sync_status = 'pending' OR (:include_failed AND sync_status = 'failed'))
   AND (:include_failed OR next_attempt_at <= now())
   AND (sync_claimed_until IS NULL OR sync_claimed_until < now())
 ORDER BY next_attempt_at
 LIMIT :batch;
