-- name: handoff_differences()
-- Returns {key, kept, recomputed} for each agent switch whose kept ended_at / answered_at
-- (0014: the next switch, and for a hand-off its first human answer) differ from the ones
-- recomputed from the raw rows (first 20).
SELECT a.id::text AS key, concat_ws(' / ', a.ended_at, a.answered_at) AS kept,
       concat_ws(' / ', r.ended_at, r.answered_at) AS recomputed
  FROM agent_status_changes AS a
  JOIN recomputed_handoffs() AS r USING (id)
 WHERE (a.ended_at, a.answered_at) IS DISTINCT FROM (r.ended_at, r.answered_at)
 ORDER BY a.id
 LIMIT 20;
