-- name: requirement_item_day_differences()
-- Returns {key, kept, recomputed} for each (kind, UTC day, spelling) whose kept count of
-- items added (or requirements created) that day (requirement_item_days, 0013) differs from
-- the count over features, integrations and requirements.
SELECT coalesce(k.kind, r.kind) || ' ' || coalesce(k.day, r.day) || ' ' || coalesce(k.name, r.name) AS key,
       coalesce(k.items, 0)::text AS kept, coalesce(r.items, 0)::text AS recomputed
  FROM (SELECT * FROM requirement_item_days WHERE items <> 0) AS k
  FULL JOIN recomputed_requirement_item_days() AS r USING (kind, day, normalized, name)
 WHERE coalesce(k.items, 0) <> coalesce(r.items, 0)
 ORDER BY 1;
