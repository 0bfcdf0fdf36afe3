-- name: human_takeover(since, until)^
-- Returns the sales team's take-overs of hand-offs made in [since, until): handoffs (switches
-- of the agent to off), answered (a human wrote in the conversation after the hand-off and
-- before its next switch), the seconds from hand-off to that first human message (median and
-- p90, percentile_cont over the answered ones; NULL without any), unanswered_now (no human
-- message yet and the agent still off), switched_back (the agent was switched on again
-- since), and conversations_human_wrote (distinct conversations with a human message in the
-- period). Exact: answered_at and ended_at are kept on each hand-off by triggers (0014), so
-- it reads one index range of hand-offs and one of humans' messages.
WITH handoffs AS (
    SELECT extract(epoch FROM a.answered_at - a.changed_at)::float8 AS wait, a.answered_at, a.ended_at
      FROM agent_status_changes AS a
     WHERE NOT a.enabled AND a.changed_at >= :since AND a.changed_at < :until
)
SELECT count(*) AS handoffs,
       count(h.wait) AS answered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY h.wait) AS median_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY h.wait) AS p90_seconds,
       count(*) FILTER (WHERE h.answered_at IS NULL AND h.ended_at IS NULL) AS unanswered_now,
       count(*) FILTER (WHERE h.ended_at IS NOT NULL) AS switched_back,
       (SELECT count(DISTINCT m.conversation_id) FROM messages AS m
         WHERE m.role = 'human' AND m.created_at >= :since AND m.created_at < :until)
           AS conversations_human_wrote
  FROM handoffs AS h;
