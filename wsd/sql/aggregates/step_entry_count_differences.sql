-- name: step_entry_count_differences()
-- Returns {key, kept, recomputed} for each (quarter-hour, step) whose kept count of first
-- entries (step_entry_counts, 0013) differs from the count over lead_step_entries.
SELECT coalesce(k.quarter, r.quarter) || ' ' || coalesce(k.step, r.step) AS key,
       coalesce(k.leads, 0)::text AS kept, coalesce(r.leads, 0)::text AS recomputed
  FROM (SELECT * FROM step_entry_counts WHERE leads <> 0) AS k
  FULL JOIN recomputed_step_entry_counts() AS r USING (quarter, step)
 WHERE coalesce(k.leads, 0) <> coalesce(r.leads, 0)
 ORDER BY 1;
