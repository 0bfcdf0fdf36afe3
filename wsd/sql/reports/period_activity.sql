-- name: period_activity(since, until)^
-- Returns the events of [since, until) the front page counts: {new_leads, messages,
-- step_changes, meetings_created, agent_toggles} (the timeline's kinds), summed from the
-- kept counts by activity_in (whole UTC days, then quarter-hours; a period's bounds are local
-- midnights, whole UTC quarter-hours, so no raw rows are read).
SELECT coalesce(sum(events) FILTER (WHERE kind = 'new_leads'), 0)::bigint AS new_leads,
       coalesce(sum(events) FILTER (WHERE kind = 'messages'), 0)::bigint AS messages,
       coalesce(sum(events) FILTER (WHERE kind = 'step_changes'), 0)::bigint AS step_changes,
       coalesce(sum(events) FILTER (WHERE kind = 'meetings_created'), 0)::bigint AS meetings_created,
       coalesce(sum(events) FILTER (WHERE kind = 'agent_toggles'), 0)::bigint AS agent_toggles
  FROM activity_in(:since, :until);
