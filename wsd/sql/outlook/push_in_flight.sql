-- name: push_in_flight(meeting_id)$
-- Returns true while another pusher holds the meeting (an unexpired claim on a meeting
-- Outlook does not have yet), false otherwise.
SELECT EXISTS (
    SELECT 1 FROM meetings
     WHERE id = :meeting_id
       AND sync_status IN ('pending', 'failed')
       AND sync_claimed_until >= now());
