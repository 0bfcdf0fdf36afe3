-- name: period_activity(since, until)^
-- Returns the events of [since, until) the front page counts: {new_leads, messages,
-- step_changes, meetings_created, agent_toggles} (the timeline's kinds), from the kept
-- quarter-hour activity_counts (raw rows for partial quarters at the ends).
SELECT coalesce(sum(events) FILTER (WHERE kind = 'new_leads'), 0)::bigint AS new_leads,
       coalesce(sum(events) FILTER (WHERE kind = 'messages'), 0)::bigint AS messages,
       coalesce(sum(events) FILTER (WHERE kind = 'step_changes'), 0)::bigint AS step_changes,
       coalesce(sum(events) FILTER (WHERE kind = 'meetings_created'), 0)::bigint AS meetings_created,
       coalesce(sum(events) FILTER (WHERE kind = 'agent_toggles'), 0)::bigint AS agent_toggles
  FROM activity_in(:since, :until);
