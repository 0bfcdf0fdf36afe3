-- name: claim_meeting(meeting_id, lease_seconds)^
-- Takes the meeting for one push if it has changes Outlook lacks and nobody else holds it:
-- returns the whole row, or no row. The hold lapses after lease_seconds (a crashed pusher).
UPDATE meetings
   SET sync_claimed_until = now() + make_interval(secs => :lease_seconds)
 WHERE id = :meeting_id
   AND sync_status IN ('pending', 'failed')
   AND (sync_claimed_until IS NULL OR sync_claimed_until < now())
RETURNING *;
