-- name: activity_day_differences()
-- Returns {key, kept, recomputed} for each (kind, UTC day) whose kept roll-up (activity_days,
-- 0016) differs from the sum of that day's kept quarter-hour activity_counts (a missing row
-- counts as 0).
SELECT coalesce(k.kind, r.kind) || ' ' || coalesce(k.day, r.day) AS key,
       coalesce(k.events, 0) || ' events, total ' || coalesce(k.total, 0) AS kept,
       coalesce(r.events, 0) || ' events, total ' || coalesce(r.total, 0) AS recomputed
  FROM (SELECT * FROM activity_days WHERE events <> 0 OR total <> 0) AS k
  FULL JOIN (SELECT * FROM recomputed_activity_days() WHERE events <> 0 OR total <> 0) AS r USING (kind, day)
 WHERE coalesce(k.events, 0) <> coalesce(r.events, 0) OR coalesce(k.total, 0) <> coalesce(r.total, 0)
 ORDER BY 1;
