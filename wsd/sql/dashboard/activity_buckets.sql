-- name: activity_buckets(window_start)
-- Returns 24 hourly buckets from window_start, oldest first, zero-filled: {hour, new_leads,
-- messages, step_changes, meetings_created, agent_toggles}, each counting what happened in
-- [hour, hour + 1 h). Summed from the kept quarter-hour activity_counts (window_start is a
-- local hour, so a whole number of UTC quarter-hours).
WITH bounds AS (
    SELECT :window_start::timestamptz AS since, :window_start::timestamptz + interval '24 hours' AS until
), counts AS (
    SELECT c.kind, date_bin('1 hour', c.quarter, b.since) AS hour, sum(c.events) AS n
      FROM activity_counts AS c, bounds AS b
     WHERE c.kind IN ('new_leads', 'messages', 'step_changes', 'meetings_created', 'agent_toggles')
       AND c.quarter >= b.since AND c.quarter < b.until
     GROUP BY 1, 2
)
SELECT hours.hour,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'new_leads'), 0)::bigint AS new_leads,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'messages'), 0)::bigint AS messages,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'step_changes'), 0)::bigint AS step_changes,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'meetings_created'), 0)::bigint AS meetings_created,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'agent_toggles'), 0)::bigint AS agent_toggles
  FROM bounds AS b,
       generate_series(b.since, b.until - interval '1 hour', interval '1 hour') AS hours(hour)
  LEFT JOIN counts AS c ON c.hour = hours.hour
 GROUP BY hours.hour
 ORDER BY hours.hour;
