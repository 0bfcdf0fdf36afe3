-- name: push_failed(meeting_id, error, permanent, max_attempts, retry_seconds)$
-- Records a failed push and returns the sync_status: failed when Graph refused for good or
-- after max_attempts tries, else pending with the next try after a doubling delay (≤ 5 min).
UPDATE meetings
   SET sync_attempts = sync_attempts + 1,
       last_error = :error,
       sync_status = CASE WHEN :permanent OR sync_attempts + 1 >= :max_attempts
                          THEN 'failed' ELSE 'pending' END,
       next_attempt_at = now() + make_interval(
           secs => least(300, :retry_seconds::float8 * 2 ^ least(sync_attempts, 16))),
       sync_claimed_until = NULL
 WHERE id = :meeting_id
RETURNING sync_status;
