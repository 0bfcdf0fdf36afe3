-- name: lead_cohort_count_differences()
-- Returns {key, kept, recomputed} for each (quarter-hour of creation, step) whose kept
-- current/furthest counts (lead_cohort_counts, 0013) differ from the counts over
-- lead_qualifications (a missing row counts as 0).
SELECT coalesce(k.quarter, r.quarter) || ' ' || coalesce(k.step, r.step) AS key,
       coalesce(k.current, 0) || ' current, ' || coalesce(k.furthest, 0) || ' furthest' AS kept,
       coalesce(r.current, 0) || ' current, ' || coalesce(r.furthest, 0) || ' furthest' AS recomputed
  FROM (SELECT * FROM lead_cohort_counts WHERE current <> 0 OR furthest <> 0) AS k
  FULL JOIN recomputed_lead_cohort_counts() AS r USING (quarter, step)
 WHERE (coalesce(k.current, 0), coalesce(k.furthest, 0)) <> (coalesce(r.current, 0), coalesce(r.furthest, 0))
 ORDER BY 1;
