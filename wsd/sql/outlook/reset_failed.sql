-- name: reset_failed()!
-- Gives failed meetings a fresh round of attempts (each calendar sync retries them).
UPDATE meetings SET sync_status = 'pending', sync_attempts = 0, next_attempt_at = now()
 WHERE sync_status = 'failed';
