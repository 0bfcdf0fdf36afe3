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
       -- One pass for the counts and percentiles: aggregates over response_seconds skip the
       -- messages that answer no user message (NULL there). (Distinct conversations are
       -- counted apart: a hashed DISTINCT is cheaper than one inside this aggregate.)
       (SELECT json_build_object(
                   'agent_messages', count(*),
                   'count', count(response_seconds),
                   'average', avg(response_seconds),
                   'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds),
                   'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY response_seconds))
          FROM messages
         WHERE role = 'agent' AND created_at >= :since AND created_at < :until) AS replies,
       (SELECT json_build_object('leads', count(*), 'moves', coalesce(sum(moves), 0))
          FROM (SELECT lead_id, count(*) AS moves FROM lead_step_history
                 WHERE source = 'agent' AND to_step > from_step
                   AND changed_at >= :since AND changed_at < :until
                 GROUP BY lead_id) AS advances) AS advanced,
       (SELECT count(*) FROM meetings
         WHERE created_at >= :since AND created_at < :until AND lead_agent_handled) AS meetings_booked,
       (SELECT json_build_object('leads', count(*), 'completed', count(completed_at))
          FROM lead_qualifications
         WHERE created_at >= :since AND created_at < :until AND agent_handled) AS handled_leads;
