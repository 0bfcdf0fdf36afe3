-- name: wanted_item_leads(kind, name)$
-- Returns how many leads want a feature or integration (kind 'features' or 'integrations')
-- of that name (trimmed, case-folded), from the kept requirement_item_names: a lead has one
-- requirements row and each name once in it, so its items of the name are its leads.
SELECT coalesce(sum(items), 0)::bigint
  FROM requirement_item_names
 WHERE kind = :kind AND normalized = normalized_name(:name);
