-- name: record_entry(actor, actor_role, resource, action, ids, payload, outcome)!
-- Adds one trail entry, its lead resolved from its ids (trail_lead), at the transaction's
-- time.
INSERT INTO trail_entries (actor, actor_role, resource, action, lead_id, ids, payload, outcome)
VALUES (:actor, :actor_role, :resource, :action, trail_lead(:ids::jsonb), :ids, :payload, :outcome);
