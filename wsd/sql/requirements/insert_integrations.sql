-- name: insert_integrations(requirements_id, names, descriptions)
-- Adds integrations to a requirement from two parallel arrays, in array order; returns the
-- created items {id, name, description} in that order.
WITH created AS (
    INSERT INTO integrations (requirements_id, name, description, created_at)
    SELECT :requirements_id, item.name, item.description, clock_timestamp()
      FROM unnest(:names::text[], :descriptions::text[]) WITH ORDINALITY AS item(name, description, position)
     ORDER BY item.position
    RETURNING id, name, description, created_at
)
SELECT id, name, description FROM created ORDER BY created_at, id;
