-- name: sync_state(mailbox)^
-- Returns where the mailbox's calendar sync stands (no row before the first sync) and how
-- many meetings wait for a push: {delta_link, window_start, window_end, last_success_at,
-- last_attempt_at, last_error, pending_meetings, failed_meetings}.
SELECT s.delta_link, s.window_start, s.window_end, s.last_success_at, s.last_attempt_at, s.last_error,
       (SELECT count(*) FROM meetings WHERE sync_status = 'pending') AS pending_meetings,
       (SELECT count(*) FROM meetings WHERE sync_status = 'failed') AS failed_meetings
  FROM (SELECT :mailbox::text AS mailbox) AS box
  LEFT JOIN outlook_sync_state AS s ON s.mailbox = box.mailbox;
