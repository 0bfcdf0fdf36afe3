-- name: lead_of_user(lead_id)^
-- Returns {user_id, current_step} of a lead, locking it until the transaction ends; no row
-- for an unknown lead.
SELECT user_id, current_step FROM lead_qualifications WHERE id = :lead_id FOR UPDATE;
