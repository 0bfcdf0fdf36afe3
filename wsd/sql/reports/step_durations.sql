-- name: step_durations(now, stalled_hours)
-- Returns 14 rows, per step in funnel order and agent on/off in the lead's conversation
-- (false without one): {step, agent_on, leads, median_hours, p90_hours, stalled}: the leads
-- at the step now, percentile_cont(0.5) and (0.9) of the hours since each entered it
-- (measured at `now`; NULL without leads), and how many have been there longer than the
-- step's threshold (stalled_hours: 7 float8 in funnel order, NULL for a step that never
-- stalls: 0). Exact: each percentile reads the one or two values at its ranks from
-- lead_qualifications_step_time_idx (leads sorted by step_entered_at, latest first) and
-- interpolates as percentile_cont does.
WITH groups AS (
    SELECT s.step, s.position, a.agent_on, t.hours AS stalled_hours,
           (SELECT count(*) FROM lead_qualifications AS l
             WHERE l.current_step = s.step AND l.agent_on = a.agent_on) AS leads
      FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
      JOIN unnest(:stalled_hours::float8[]) WITH ORDINALITY AS t(hours, position) USING (position)
     CROSS JOIN (VALUES (true), (false)) AS a(agent_on)
)
SELECT g.step, g.agent_on, g.leads, p.values[1] AS median_hours, p.values[2] AS p90_hours,
       CASE WHEN g.stalled_hours IS NULL THEN 0 ELSE (
           SELECT count(*) FROM lead_qualifications AS l
            WHERE l.current_step = g.step AND l.agent_on = g.agent_on
              AND l.step_entered_at < :now::timestamptz - make_interval(secs => g.stalled_hours * 3600)) END
           AS stalled
  FROM groups AS g
 CROSS JOIN LATERAL (
       SELECT array_agg(CASE WHEN r.lo = r.hi THEN r.v[1] ELSE r.v[1] + (r.position - r.lo) * (r.v[2] - r.v[1]) END
                        ORDER BY f.i) AS values
         FROM unnest(ARRAY[0.5, 0.9]::float8[]) WITH ORDINALITY AS f(p, i)
        CROSS JOIN LATERAL (
              SELECT f.p * (g.leads - 1) AS position, floor(f.p * (g.leads - 1)) AS lo,
                     ceil(f.p * (g.leads - 1)) AS hi,
                     (SELECT array_agg(extract(epoch FROM :now::timestamptz - x.step_entered_at)::float8 / 3600
                                       ORDER BY x.step_entered_at DESC)
                        FROM (SELECT l.step_entered_at FROM lead_qualifications AS l
                               WHERE l.current_step = g.step AND l.agent_on = g.agent_on
                               ORDER BY l.step_entered_at DESC
                              OFFSET floor(f.p * (g.leads - 1))::bigint LIMIT 2) AS x) AS v) AS r
        WHERE g.leads > 0) AS p
 ORDER BY g.position, g.agent_on DESC;
