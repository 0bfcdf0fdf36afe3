-- name: requirements_by_lead(lead_id)^
-- Returns {lead_exists, requirements}: whether the lead exists, and its requirements
-- document (NULL when it has none).
SELECT true AS lead_exists,
       (SELECT requirements_document(r) FROM requirements AS r WHERE r.lead_id = l.id) AS requirements
  FROM lead_qualifications AS l
 WHERE l.id = :lead_id;
