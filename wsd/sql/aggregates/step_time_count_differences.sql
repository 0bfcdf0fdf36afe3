-- name: step_time_count_differences()
-- Returns {key, kept, recomputed} for each (step, agent on/off, UTC day) whose kept count of
-- leads at the step since that day (step_time_counts, 0013) differs from the count over
-- lead_qualifications.
SELECT coalesce(k.step, r.step) || ' ' || coalesce(k.agent_on, r.agent_on) || ' ' || coalesce(k.day, r.day) AS key,
       coalesce(k.leads, 0)::text AS kept, coalesce(r.leads, 0)::text AS recomputed
  FROM (SELECT * FROM step_time_counts WHERE leads <> 0) AS k
  FULL JOIN recomputed_step_time_counts() AS r USING (step, agent_on, day)
 WHERE coalesce(k.leads, 0) <> coalesce(r.leads, 0)
 ORDER BY 1;
