-- name: lead_step_time_differences()
-- Returns {key, kept, recomputed} for each lead whose kept step_entered_at or agent_on
-- (0013) differs from the one recomputed from its history and conversation (first 20).
SELECT l.id::text AS key, l.step_entered_at || ' ' || l.agent_on AS kept,
       r.step_entered_at || ' ' || r.agent_on AS recomputed
  FROM lead_qualifications AS l
  JOIN recomputed_lead_step_times() AS r USING (id)
 WHERE (l.step_entered_at, l.agent_on) IS DISTINCT FROM (r.step_entered_at, r.agent_on)
 ORDER BY 1
 LIMIT 20;
