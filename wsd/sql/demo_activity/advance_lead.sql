-- name: advance_lead(lead_id, new_step)!
-- Sets the lead's step as the agent does: consent is given from `consent` on, completed_at
-- is set on entering `completed`. Returns nothing.
UPDATE lead_qualifications
   SET current_step = :new_step::lead_step,
       updated_at = now(),
       consent = consent OR :new_step::lead_step >= 'consent'::lead_step,
       completed_at = CASE WHEN :new_step::lead_step = 'completed'
                           THEN coalesce(completed_at, now()) END
 WHERE id = :lead_id;
