-- name: save_sync_state(mailbox, delta_link, window_start, window_end, succeeded, error)!
-- Records a sync round: the delta link to continue from (kept when NULL) and its outcome.
INSERT INTO outlook_sync_state AS s (mailbox, delta_link, window_start, window_end, last_success_at,
                                     last_attempt_at, last_error)
VALUES (:mailbox, :delta_link, :window_start, :window_end,
        CASE WHEN :succeeded THEN now() END, now(), :error)
ON CONFLICT (mailbox) DO UPDATE
   SET delta_link = coalesce(EXCLUDED.delta_link, s.delta_link),
       window_start = coalesce(EXCLUDED.window_start, s.window_start),
       window_end = coalesce(EXCLUDED.window_end, s.window_end),
       last_success_at = coalesce(EXCLUDED.last_success_at, s.last_success_at),
       last_attempt_at = EXCLUDED.last_attempt_at,
       last_error = EXCLUDED.last_error;
