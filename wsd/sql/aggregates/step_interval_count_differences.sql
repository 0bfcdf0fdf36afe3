-- name: step_interval_count_differences()
-- Returns {key, kept, recomputed} for each (step, hour) whose kept count of intervals differs
-- from the count over lead_step_entries (a missing row counts as 0).
SELECT coalesce(k.step, r.step) || ' hour ' || coalesce(k.hour_bucket, r.hour_bucket) AS key,
       coalesce(k.leads, 0)::text AS kept, coalesce(r.leads, 0)::text AS recomputed
  FROM (SELECT * FROM step_interval_counts WHERE leads <> 0) AS k
  FULL JOIN recomputed_step_interval_counts() AS r USING (step, hour_bucket)
 WHERE coalesce(k.leads, 0) <> coalesce(r.leads, 0)
 ORDER BY 1;
