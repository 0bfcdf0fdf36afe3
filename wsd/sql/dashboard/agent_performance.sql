-- name: agent_performance(since, until)^
-- Returns the AI agent's numbers for [since, until): conversations it took on (its first
-- message in them), handoffs (agent switched off), its messages and its first-response
-- times to user messages (count, average, median, p90 in seconds; NULL without replies),
-- its forward step moves, meetings booked for leads it handled, and how many of the leads
-- created in the period that it handled are completed. Counts and the average come from the
-- kept quarter-hour activity_counts (raw rows for the partial quarters at the ends); the
-- percentiles are one index range over the period's agent messages.
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
), percentiles AS (
    -- Replies only: messages answering no user message have no response_seconds.
    SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY response_seconds) AS p
      FROM messages
     WHERE role = 'agent' AND created_at >= :since AND created_at < :until
       AND response_seconds IS NOT NULL
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
