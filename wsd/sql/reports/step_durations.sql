-- name: step_durations(now, stalled_hours)
-- Returns 14 rows, per step in funnel order and agent on/off in the lead's conversation
-- (false without one): {step, agent_on, leads, median_hours, p90_hours, stalled}: the leads
-- at the step now, percentile_cont(0.5) and (0.9) of the hours since each entered it
-- (measured at `now`; NULL without leads), and how many have been there longer than the
-- step's threshold (stalled_hours: 7 float8 in funnel order, NULL for a step that never
-- stalls: 0). Exact, from the kept per-day step_time_counts: their running sums locate the
-- day holding each rank percentile_cont reads, whose value is read from that day's range of
-- lead_qualifications_step_time_idx; a stalled count is the whole days before the cutoff
-- plus one range of the cutoff's day.
WITH groups AS (
    SELECT s.step, s.position, a.agent_on,
           :now::timestamptz - make_interval(secs => t.hours * 3600) AS cutoff
      FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
      JOIN unnest(:stalled_hours::float8[]) WITH ORDINALITY AS t(hours, position) USING (position)
     CROSS JOIN (VALUES (true), (false)) AS a(agent_on)
), days AS (
    -- Latest day first: ranks count from the lead that entered last (the shortest time).
    SELECT step, agent_on, day, leads,
           sum(leads) OVER (PARTITION BY step, agent_on ORDER BY day DESC) AS through
      FROM step_time_counts
     WHERE leads <> 0
), totals AS (
    SELECT g.*, coalesce((SELECT max(d.through) FROM days AS d
                           WHERE d.step = g.step AND d.agent_on = g.agent_on), 0)::bigint AS leads
      FROM groups AS g
), fractions AS (
    SELECT t.step, t.agent_on, f.i, f.p * (t.leads - 1) AS position
      FROM totals AS t, unnest(ARRAY[0.5, 0.9]::float8[]) WITH ORDINALITY AS f(p, i)
     WHERE t.leads > 0
), located AS (
    -- Each rank read, with its day and its 0-based rank among that day's leads.
    SELECT r.step, r.agent_on, r.rank, d.day, r.rank - (d.through - d.leads) AS rank_in_day
      FROM (SELECT step, agent_on, floor(position)::bigint AS rank FROM fractions
            UNION SELECT step, agent_on, ceil(position)::bigint FROM fractions) AS r
      JOIN days AS d ON d.step = r.step AND d.agent_on = r.agent_on
                    AND r.rank >= d.through - d.leads AND r.rank < d.through
), valued AS (
    SELECT l.step, l.agent_on, l.rank,
           (SELECT extract(epoch FROM :now::timestamptz - q.step_entered_at)::float8 / 3600
              FROM lead_qualifications AS q
             WHERE q.current_step = l.step AND q.agent_on = l.agent_on
               AND q.step_entered_at >= l.day AND q.step_entered_at < l.day + interval '1 day'
             ORDER BY q.step_entered_at DESC
            OFFSET l.rank_in_day LIMIT 1) AS hours
      FROM located AS l
), percentiles AS (
    -- percentile_cont's interpolation: lo + (position - floor) * (hi - lo).
    SELECT f.step, f.agent_on,
           array_agg(CASE WHEN lo.rank = hi.rank THEN lo.hours
                          ELSE lo.hours + (f.position - floor(f.position)) * (hi.hours - lo.hours) END
                     ORDER BY f.i) AS p
      FROM fractions AS f
      JOIN valued AS lo ON lo.step = f.step AND lo.agent_on = f.agent_on AND lo.rank = floor(f.position)::bigint
      JOIN valued AS hi ON hi.step = f.step AND hi.agent_on = f.agent_on AND hi.rank = ceil(f.position)::bigint
     GROUP BY f.step, f.agent_on
)
SELECT t.step, t.agent_on, t.leads, p.p[1] AS median_hours, p.p[2] AS p90_hours,
       CASE WHEN t.cutoff IS NULL THEN 0 ELSE
           coalesce((SELECT sum(d.leads) FROM days AS d
                      WHERE d.step = t.step AND d.agent_on = t.agent_on
                        AND d.day < utc_day(t.cutoff)), 0)::bigint
           + (SELECT count(*) FROM lead_qualifications AS q
               WHERE q.current_step = t.step AND q.agent_on = t.agent_on
                 AND q.step_entered_at >= utc_day(t.cutoff) AND q.step_entered_at < t.cutoff) END
           AS stalled
  FROM totals AS t
  LEFT JOIN percentiles AS p ON p.step = t.step AND p.agent_on = t.agent_on
 ORDER BY t.position, t.agent_on DESC;
