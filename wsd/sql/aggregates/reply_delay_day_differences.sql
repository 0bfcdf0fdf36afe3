-- name: reply_delay_day_differences()
-- Returns {key, kept, recomputed} for each (UTC day, whole second of delay) whose kept roll-up
-- (reply_delay_days, 0016) differs from the sum of that day's kept reply_delay_counts (a
-- missing row counts as 0).
SELECT coalesce(k.day, r.day) || ' second ' || coalesce(k.second, r.second) AS key,
       coalesce(k.replies, 0)::text AS kept, coalesce(r.replies, 0)::text AS recomputed
  FROM (SELECT * FROM reply_delay_days WHERE replies <> 0) AS k
  FULL JOIN (SELECT * FROM recomputed_reply_delay_days() WHERE replies <> 0) AS r USING (day, second)
 WHERE coalesce(k.replies, 0) <> coalesce(r.replies, 0)
 ORDER BY 1;
