-- name: recent_activity()^
-- Returns {messages_last_5_minutes, new_leads_last_5_minutes}.
SELECT (SELECT count(*) FROM messages WHERE created_at > now() - interval '5 minutes') AS messages_last_5_minutes,
       (SELECT count(*) FROM lead_qualifications WHERE created_at > now() - interval '5 minutes') AS new_leads_last_5_minutes;
