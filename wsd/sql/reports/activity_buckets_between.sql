-- name: activity_buckets_between(bounds)
-- Returns one bucket per pair of consecutive instants in `bounds` (sorted, each a whole UTC
-- quarter-hour), oldest first, zero-filled: {start, new_leads, messages, step_changes,
-- meetings_created, agent_toggles}, each counting what happened in [start, next bound).
-- Summed from the kept quarter-hour activity_counts.
WITH bounds AS (
    SELECT b.at, b.i FROM unnest(:bounds::timestamptz[]) WITH ORDINALITY AS b(at, i)
), counts AS (
    SELECT width_bucket(c.quarter, :bounds::timestamptz[]) AS i, c.kind, sum(c.events) AS n
      FROM activity_counts AS c
     WHERE c.kind IN ('new_leads', 'messages', 'step_changes', 'meetings_created', 'agent_toggles')
       AND c.quarter >= (SELECT min(at) FROM bounds) AND c.quarter < (SELECT max(at) FROM bounds)
     GROUP BY 1, 2
)
SELECT b.at AS start,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'new_leads'), 0)::bigint AS new_leads,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'messages'), 0)::bigint AS messages,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'step_changes'), 0)::bigint AS step_changes,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'meetings_created'), 0)::bigint AS meetings_created,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'agent_toggles'), 0)::bigint AS agent_toggles
  FROM bounds AS b
  LEFT JOIN counts AS c ON c.i = b.i
 WHERE b.i < (SELECT max(i) FROM bounds)
 GROUP BY b.i, b.at
 ORDER BY b.i;
