-- name: record_step_change(lead_id, from_step, to_step, source)!
-- Appends a step change to the lead's history (its trigger keeps furthest_step and the
-- first-entry times current).
INSERT INTO lead_step_history (lead_id, from_step, to_step, source)
VALUES (:lead_id, :from_step::lead_step, :to_step::lead_step, :source);
