-- name: insert_requirements(lead_id, app_type, deadline)$
-- Creates the requirements row of a lead and returns its id; NULL when the lead does not
-- exist. A lead that already has one violates requirements_lead_id_key.
INSERT INTO requirements (lead_id, app_type, deadline)
SELECT l.id, :app_type, :deadline::date FROM lead_qualifications AS l WHERE l.id = :lead_id
RETURNING id;
