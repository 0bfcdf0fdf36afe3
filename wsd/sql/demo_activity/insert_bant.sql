-- name: insert_bant(lead_id, budget, authority, need, timeline)!
-- Stores the lead's BANT answers unless it has some already (a lead moved back and
-- forward again keeps its first ones). Returns nothing.
INSERT INTO bant_data (lead_id, budget, authority, need, timeline)
VALUES (:lead_id, :budget, :authority, :need, :timeline)
ON CONFLICT (lead_id) DO NOTHING;
