-- name: reply_delay_count_differences()
-- Returns {key, kept, recomputed} for each (UTC hour, whole second of delay) whose kept count
-- of agent replies (reply_delay_counts, 0010) differs from the count over messages (a missing
-- row counts as 0).
SELECT coalesce(k.hour, r.hour) || ' second ' || coalesce(k.second, r.second) AS key,
       coalesce(k.replies, 0)::text AS kept, coalesce(r.replies, 0)::text AS recomputed
  FROM (SELECT * FROM reply_delay_counts WHERE replies <> 0) AS k
  FULL JOIN recomputed_reply_delay_counts() AS r USING (hour, second)
 WHERE coalesce(k.replies, 0) <> coalesce(r.replies, 0)
 ORDER BY 1;
