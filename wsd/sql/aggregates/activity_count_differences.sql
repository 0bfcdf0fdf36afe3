-- name: activity_count_differences()
-- Returns {key, kept, recomputed} for each (kind, quarter-hour) whose kept count (or reply
-- seconds total) differs from the count over the raw tables.
SELECT coalesce(k.kind, r.kind) || ' ' || coalesce(k.quarter, r.quarter) AS key,
       coalesce(k.events, 0) || ' events, total ' || coalesce(k.total, 0) AS kept,
       coalesce(r.events, 0) || ' events, total ' || coalesce(r.total, 0) AS recomputed
  FROM (SELECT * FROM activity_counts WHERE events <> 0 OR total <> 0) AS k
  FULL JOIN recomputed_activity_counts() AS r USING (kind, quarter)
 WHERE coalesce(k.events, 0) <> coalesce(r.events, 0) OR coalesce(k.total, 0) <> coalesce(r.total, 0)
 ORDER BY 1;
