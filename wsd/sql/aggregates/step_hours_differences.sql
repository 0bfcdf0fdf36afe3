-- name: step_hours_differences()
-- Returns {key, kept, recomputed} for each lead_step_entries row whose kept
-- hours_from_previous differs from the one recomputed from the entry times (first 20).
SELECT e.lead_id || ' ' || e.step AS key, e.hours_from_previous::text AS kept, r.hours::text AS recomputed
  FROM lead_step_entries AS e
  JOIN recomputed_step_hours() AS r USING (lead_id, step)
 WHERE e.hours_from_previous IS DISTINCT FROM r.hours
 ORDER BY 1
 LIMIT 20;
