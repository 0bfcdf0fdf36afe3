-- name: record_entry(actor, actor_role, actor_name, actor_email, resource, action, ids, payload, outcome)!
-- Adds one trail entry, its lead resolved from its ids (trail_lead), at the transaction's
-- time; actor_name and actor_email are a signed-in person's (NULL for an API token).
INSERT INTO trail_entries (actor, actor_role, actor_name, actor_email, resource, action, lead_id,
                           ids, payload, outcome)
VALUES (:actor, :actor_role, :actor_name, :actor_email, :resource, :action, trail_lead(:ids::jsonb),
        :ids, :payload, :outcome);
