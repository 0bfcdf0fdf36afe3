-- name: lock_lead_step(lead_id)$
-- Returns the lead's current step, locking the lead until the transaction ends; NULL for an
-- unknown id.
SELECT current_step FROM lead_qualifications WHERE id = :lead_id FOR UPDATE;
