-- name: entered_steps(since, until)
-- Returns the 7 steps in funnel order {step, entered}: the leads whose first entry into the
-- step falls in [since, until) (whole UTC quarter-hours), from the kept step_entry_counts
-- (one pass over the period's rows).
WITH counts AS (
    SELECT step, sum(leads) AS entered
      FROM step_entry_counts
     WHERE quarter >= :since AND quarter < :until
     GROUP BY step
)
SELECT s.step, coalesce(c.entered, 0)::bigint AS entered
  FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
  LEFT JOIN counts AS c USING (step)
 ORDER BY s.position;
