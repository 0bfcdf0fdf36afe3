-- name: agent_performance(since, until)^
-- Returns the AI agent's numbers for [since, until): conversations it wrote in, handoffs
-- (agent switched off), its messages and its first-response times to user messages
-- (count, average, median, p90 in seconds; NULL without replies), leads it moved forward
-- and the forward moves, meetings booked for leads it handled, and how many of the leads
-- created in the period that it handled are completed.
SELECT (SELECT count(*) FROM (SELECT DISTINCT conversation_id FROM messages
                               WHERE role = 'agent' AND created_at >= :since AND created_at < :until)
                              AS handled) AS conversations_handled,
       (SELECT count(*) FROM agent_status_changes
         WHERE NOT enabled AND changed_at >= :since AND changed_at < :until) AS handoffs,
       -- One pass over the agent's messages: aggregates over response_seconds skip the
       -- messages that answer no user message (NULL there).
       (SELECT json_build_object(
                   'agent_messages', count(*),
                   'count', count(response_seconds),
                   'average', avg(response_seconds),
                   'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds),
                   'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY response_seconds))
          FROM messages
         WHERE role = 'agent' AND created_at >= :since AND created_at < :until) AS replies,
       (SELECT json_build_object('leads', count(DISTINCT lead_id), 'moves', count(*))
          FROM lead_step_history
         WHERE source = 'agent' AND to_step > from_step
           AND changed_at >= :since AND changed_at < :until) AS advanced,
       (SELECT count(*) FROM meetings AS m
          JOIN lead_qualifications AS l ON l.id = m.lead_id
         WHERE m.created_at >= :since AND m.created_at < :until AND l.agent_handled) AS meetings_booked,
       (SELECT json_build_object('leads', count(*), 'completed', count(completed_at))
          FROM lead_qualifications
         WHERE created_at >= :since AND created_at < :until AND agent_handled) AS handled_leads;
