-- name: step_interval_day_differences()
-- Returns {key, kept, recomputed} for each (step, UTC day of entry, whole hour of interval)
-- whose kept count of entries (step_interval_days, 0013) differs from the count over
-- lead_step_entries.
SELECT coalesce(k.step, r.step) || ' ' || coalesce(k.day, r.day) || ' hour ' || coalesce(k.hour_bucket, r.hour_bucket) AS key,
       coalesce(k.leads, 0)::text AS kept, coalesce(r.leads, 0)::text AS recomputed
  FROM (SELECT * FROM step_interval_days WHERE leads <> 0) AS k
  FULL JOIN recomputed_step_interval_days() AS r USING (step, day, hour_bucket)
 WHERE coalesce(k.leads, 0) <> coalesce(r.leads, 0)
 ORDER BY 1;
