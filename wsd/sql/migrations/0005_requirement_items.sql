-- Features and integrations as one list of items of a kind, for queries over both (a
-- condition on `kind` leaves the other table out of the plan).
CREATE VIEW requirement_items AS
SELECT 'features' AS kind, id, requirements_id, name, description, created_at FROM features
UNION ALL
SELECT 'integrations' AS kind, id, requirements_id, name, description, created_at FROM integrations;
