-- name: activity_buckets(window_start)
-- Returns 24 hourly buckets from window_start, oldest first, zero-filled: {hour, new_leads,
-- messages, step_changes, meetings_created, agent_toggles}, each counting what happened in
-- [hour, hour + 1 h).
WITH bounds AS (
    SELECT :window_start::timestamptz AS since, :window_start::timestamptz + interval '24 hours' AS until
), counts AS (
    SELECT 'new_leads' AS kind, date_bin('1 hour', l.created_at, b.since) AS hour, count(*) AS n
      FROM lead_qualifications AS l, bounds AS b
     WHERE l.created_at >= b.since AND l.created_at < b.until GROUP BY 1, 2
    UNION ALL
    SELECT 'messages', date_bin('1 hour', m.created_at, b.since), count(*)
      FROM messages AS m, bounds AS b
     WHERE m.created_at >= b.since AND m.created_at < b.until GROUP BY 1, 2
    UNION ALL
    SELECT 'step_changes', date_bin('1 hour', h.changed_at, b.since), count(*)
      FROM lead_step_history AS h, bounds AS b
     WHERE h.changed_at >= b.since AND h.changed_at < b.until AND h.from_step IS NOT NULL GROUP BY 1, 2
    UNION ALL
    SELECT 'meetings_created', date_bin('1 hour', m.created_at, b.since), count(*)
      FROM meetings AS m, bounds AS b
     WHERE m.created_at >= b.since AND m.created_at < b.until GROUP BY 1, 2
    UNION ALL
    SELECT 'agent_toggles', date_bin('1 hour', a.changed_at, b.since), count(*)
      FROM agent_status_changes AS a, bounds AS b
     WHERE a.changed_at >= b.since AND a.changed_at < b.until GROUP BY 1, 2
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
