-- name: lead_cohort_day_differences()
-- Returns {key, kept, recomputed} for each (UTC day of creation, step) whose kept roll-up
-- (lead_cohort_days, 0016) differs from the sum of that day's kept lead_cohort_counts (a
-- missing row counts as 0).
SELECT coalesce(k.day, r.day) || ' ' || coalesce(k.step, r.step) AS key,
       coalesce(k.current, 0) || ' current, ' || coalesce(k.furthest, 0) || ' furthest' AS kept,
       coalesce(r.current, 0) || ' current, ' || coalesce(r.furthest, 0) || ' furthest' AS recomputed
  FROM (SELECT * FROM lead_cohort_days WHERE current <> 0 OR furthest <> 0) AS k
  FULL JOIN (SELECT * FROM recomputed_lead_cohort_days() WHERE current <> 0 OR furthest <> 0) AS r
       USING (day, step)
 WHERE coalesce(k.current, 0) <> coalesce(r.current, 0) OR coalesce(k.furthest, 0) <> coalesce(r.furthest, 0)
 ORDER BY 1;
