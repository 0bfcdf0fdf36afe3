-- name: agent_performance(since, until)^
-- Returns the AI agent's numbers for [since, until): conversations it took on (its first
-- message in them), handoffs (agent switched off), its messages and its first-response
-- times to user messages (count, average, median, p90 in seconds; NULL without replies),
-- its forward step moves, meetings booked for leads it handled, and how many of the leads
-- created in the period that it handled are completed. Counts and the average come from the
-- kept quarter-hour activity_counts (raw rows for the partial quarters at the ends). The
-- median and p90 are exactly percentile_cont's over the period's replies: the window's
-- per-second histogram (reply_delays_in: kept hours, raw ends) finds the second holding
-- each rank percentile_cont reads, then one range of messages_reply_value_idx per such
-- second (its replies in value order, those inside the window counted from the nearer end)
-- reads the values at those ranks.
WITH counts AS (
    SELECT coalesce(sum(events) FILTER (WHERE kind = 'conversations_handled'), 0)::bigint AS conversations_handled,
           coalesce(sum(events) FILTER (WHERE kind = 'handoffs'), 0)::bigint AS handoffs,
           coalesce(sum(events) FILTER (WHERE kind = 'agent_messages'), 0)::bigint AS agent_messages,
           coalesce(sum(events) FILTER (WHERE kind = 'agent_replies'), 0)::bigint AS replies,
           sum(total) FILTER (WHERE kind = 'agent_replies') AS reply_seconds,
           coalesce(sum(events) FILTER (WHERE kind = 'leads_advanced'), 0)::bigint AS leads_advanced,
           coalesce(sum(events) FILTER (WHERE kind = 'meetings_booked'), 0)::bigint AS meetings_booked,
           coalesce(sum(events) FILTER (WHERE kind = 'handled_leads'), 0)::bigint AS handled_leads,
           coalesce(sum(events) FILTER (WHERE kind = 'handled_completed'), 0)::bigint AS handled_completed
      FROM activity_in(:since, :until)
), running AS (
    -- Per second of delay: its replies in the window, and how many replies sort up to it.
    SELECT second, replies, sum(replies) OVER (ORDER BY second) AS through
      FROM reply_delays_in(:since, :until)
), fractions AS (
    -- percentile_cont's row positions: p * (n - 1), read at floor and ceil (0-based ranks).
    SELECT f.i, f.p * (n.total - 1)::float8 AS position
      FROM unnest(ARRAY[0.5, 0.9]::float8[]) WITH ORDINALITY AS f(p, i),
           (SELECT max(through)::bigint AS total FROM running) AS n
     WHERE n.total > 0
), located AS (
    -- Each rank read, with the second holding it and its 0-based rank within that second.
    SELECT r.rank, s.second, r.rank - (s.through - s.replies)::bigint AS rank_in_second
      FROM (SELECT floor(position)::bigint AS rank FROM fractions
            UNION SELECT ceil(position)::bigint FROM fractions) AS r
      JOIN running AS s ON r.rank >= s.through - s.replies AND r.rank < s.through
), seconds AS (
    -- Each second read: its first and last rank read, and its replies in the window.
    SELECT l.second, min(l.rank_in_second) AS first, max(l.rank_in_second) AS last, max(r.replies) AS replies
      FROM located AS l JOIN running AS r USING (second)
     GROUP BY l.second
), sorted AS MATERIALIZED (
    -- Per second read: its window replies sorted, from the first rank read to the last: one
    -- range of messages_reply_value_idx (that second in value order, the window checked in
    -- the index), read from the end nearer those ranks, so at most half the second is read.
    SELECT s.second, s.first, v.values
      FROM seconds AS s
     CROSS JOIN LATERAL (
           SELECT array_agg(m.response_seconds ORDER BY m.response_seconds) AS values
             FROM ((SELECT response_seconds FROM messages
                     WHERE s.first <= s.replies - 1 - s.last
                       AND role = 'agent' AND response_seconds IS NOT NULL
                       AND floor(response_seconds) = s.second
                       AND created_at >= :since AND created_at < :until
                     ORDER BY response_seconds
                    OFFSET s.first LIMIT s.last - s.first + 1)
                   UNION ALL
                   (SELECT response_seconds FROM messages
                     WHERE s.first > s.replies - 1 - s.last
                       AND role = 'agent' AND response_seconds IS NOT NULL
                       AND floor(response_seconds) = s.second
                       AND created_at >= :since AND created_at < :until
                     ORDER BY response_seconds DESC
                    OFFSET s.replies - 1 - s.last LIMIT s.last - s.first + 1)) AS m) AS v
), ranked AS (
    -- The value at each rank read.
    SELECT l.rank, s.values[l.rank_in_second - s.first + 1] AS value
      FROM located AS l JOIN sorted AS s USING (second)
), percentiles AS (
    -- percentile_cont's interpolation, in its float8 arithmetic: lo + (pos - floor) * (hi - lo).
    SELECT array_agg(CASE WHEN lo.rank = hi.rank THEN lo.value
                          ELSE lo.value + (f.position - floor(f.position)) * (hi.value - lo.value) END
                     ORDER BY f.i) AS p
      FROM fractions AS f
      JOIN ranked AS lo ON lo.rank = floor(f.position)::bigint
      JOIN ranked AS hi ON hi.rank = ceil(f.position)::bigint
)
SELECT c.conversations_handled, c.handoffs,
       json_build_object(
           'agent_messages', c.agent_messages,
           'count', c.replies,
           'average', CASE WHEN c.replies > 0 THEN (c.reply_seconds / c.replies)::float8 END,
           'median', p.p[1],
           'p90', p.p[2]) AS replies,
       c.leads_advanced, c.meetings_booked,
       json_build_object('leads', c.handled_leads, 'completed', c.handled_completed) AS handled_leads
  FROM counts AS c, percentiles AS p;
