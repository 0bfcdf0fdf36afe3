-- name: scheduled_meeting_of_lead(lead_id)$
-- Returns the id of a scheduled meeting of the lead starting from now on, or NULL when it
-- has none (a lead moved back and forward again is not booked twice).
SELECT id FROM meetings
 WHERE lead_id = :lead_id AND status = 'scheduled' AND start_time > now()
 LIMIT 1;
