-- name: entered_steps(since, until)
-- Returns the 7 steps in funnel order {step, entered}: the leads whose first entry into the
-- step falls in [since, until) (whole UTC quarter-hours), from the kept step_entry_counts.
SELECT s.step, coalesce((SELECT sum(c.leads) FROM step_entry_counts AS c
                          WHERE c.step = s.step AND c.quarter >= :since AND c.quarter < :until), 0)::bigint
           AS entered
  FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
 ORDER BY s.position;
