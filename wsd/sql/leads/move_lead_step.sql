-- name: move_lead_step(lead_id, new_step)!
-- Sets the lead's step; completed_at is set on entering `completed` and cleared on leaving it.
UPDATE lead_qualifications
   SET current_step = :new_step::lead_step,
       updated_at = now(),
       completed_at = CASE WHEN :new_step::lead_step = 'completed'
                           THEN coalesce(completed_at, now()) END
 WHERE id = :lead_id;
