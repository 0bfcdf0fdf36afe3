-- name: agent_performance(since, until)^
-- Returns the AI agent's numbers for [since, until): conversations it took on (its first
-- message in them), handoffs (agent switched off), its messages and its first-response
-- times to user messages (count, average, median, p90 in seconds; NULL without replies),
-- its forward step moves, meetings booked for leads it handled, and how many of the leads
-- created in the period that it handled are completed. Every part is one index range.
SELECT (SELECT count(*) FROM conversations
         WHERE first_agent_message_at >= :since AND first_agent_message_at < :until) AS conversations_handled,
       (SELECT count(*) FROM agent_status_changes
         WHERE NOT enabled AND changed_at >= :since AND changed_at < :until) AS handoffs,
       -- Aggregates over response_seconds skip messages that answer no user message (NULL).
       (SELECT json_build_object(
                   'agent_messages', count(*),
                   'count', count(response_seconds),
                   'average', avg(response_seconds),
                   'median', percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds),
                   'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY response_seconds))
          FROM messages
         WHERE role = 'agent' AND created_at >= :since AND created_at < :until) AS replies,
       (SELECT count(*) FROM lead_step_history
         WHERE source = 'agent' AND to_step > from_step
           AND changed_at >= :since AND changed_at < :until) AS leads_advanced,
       (SELECT count(*) FROM meetings
         WHERE created_at >= :since AND created_at < :until AND lead_agent_handled) AS meetings_booked,
       (SELECT json_build_object('leads', count(*), 'completed', count(completed_at))
          FROM lead_qualifications
         WHERE created_at >= :since AND created_at < :until AND agent_handled) AS handled_leads;
