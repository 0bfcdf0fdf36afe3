-- name: dashboard_stats(day_start, day_end)^
-- Returns {total_users, active_conversations, meetings_today, leads_by_step}: all users;
-- conversations not closed with a message in the last 24 hours; meetings not cancelled
-- starting in [day_start, day_end) (the local day); leads at each of the 7 steps now.
SELECT (SELECT n FROM row_counts WHERE table_name = 'users') AS total_users,
       (SELECT count(*) FROM conversations
         WHERE status <> 'closed' AND last_message_at > now() - interval '24 hours') AS active_conversations,
       (SELECT count(*) FROM meetings
         WHERE status <> 'cancelled' AND start_time >= :day_start AND start_time < :day_end) AS meetings_today,
       (SELECT json_object_agg(step, current ORDER BY step) FROM lead_step_counts) AS leads_by_step;
