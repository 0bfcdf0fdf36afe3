-- name: requirements_by_id(requirements_id)$
-- Returns one requirements document, or NULL for an unknown id.
SELECT requirements_document(r) FROM requirements AS r WHERE r.id = :requirements_id;
