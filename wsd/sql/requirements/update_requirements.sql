-- name: update_requirements(requirements_id, app_type, set_deadline, deadline)$
-- Changes app_type when given and deadline when set_deadline (so it can be cleared); returns
-- the lead id, or NULL for an unknown requirement.
UPDATE requirements
   SET app_type = coalesce(:app_type, app_type),
       deadline = CASE WHEN :set_deadline THEN :deadline::date ELSE deadline END,
       updated_at = now()
 WHERE id = :requirements_id
RETURNING lead_id;
