-- name: insert_requirements(lead_id, app_type, deadline)$
-- Creates the lead's requirements row and returns its id; NULL when the lead has one
-- already (its features and integrations are then left as they are).
INSERT INTO requirements (lead_id, app_type, deadline)
VALUES (:lead_id, :app_type, :deadline::date)
ON CONFLICT (lead_id) DO NOTHING
RETURNING id;
