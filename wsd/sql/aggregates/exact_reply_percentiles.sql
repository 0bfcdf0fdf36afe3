-- name: exact_reply_percentiles(since, until)^
-- Returns {median, p90}: percentile_cont(0.5) and (0.9) of response_seconds over every agent
-- reply created in [since, until), read from messages alone (what agent_performance reads
-- through the kept reply_delay_counts); both NULL without replies.
SELECT p[1] AS median, p[2] AS p90
  FROM (SELECT percentile_cont(ARRAY[0.5, 0.9]::float8[]) WITHIN GROUP (ORDER BY response_seconds) AS p
          FROM messages
         WHERE role = 'agent' AND response_seconds IS NOT NULL
           AND created_at >= :since AND created_at < :until) AS e;
