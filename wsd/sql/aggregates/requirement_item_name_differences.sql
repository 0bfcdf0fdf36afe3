-- name: requirement_item_name_differences()
-- Returns {key, kept, recomputed} for each (kind, spelling) whose kept count differs from the
-- count over features and integrations, and for the kept count of requirements.
SELECT coalesce(k.kind, r.kind) || ' ' || coalesce(k.name, r.name) AS key,
       coalesce(k.items, 0)::text AS kept, coalesce(r.items, 0)::text AS recomputed
  FROM (SELECT * FROM requirement_item_names WHERE items <> 0) AS k
  FULL JOIN recomputed_requirement_item_names() AS r USING (kind, normalized, name)
 WHERE coalesce(k.items, 0) <> coalesce(r.items, 0)
UNION ALL
SELECT 'row count ' || table_name, n::text, (SELECT count(*) FROM requirements)::text
  FROM row_counts
 WHERE table_name = 'requirements' AND n <> (SELECT count(*) FROM requirements)
 ORDER BY 1;
