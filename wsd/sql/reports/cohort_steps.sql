-- name: cohort_steps(since, until)
-- Returns the 7 steps in funnel order {step, current, reached} over the leads created in
-- [since, until) (whole UTC quarter-hours): how many of them are at the step now, and how
-- many got at least as far (furthest step at or past it). From the kept counts (cohort_in).
WITH counts AS (
    SELECT step, current, furthest FROM cohort_in(:since, :until)
)
SELECT s.step, coalesce(c.current, 0)::bigint AS current,
       (sum(coalesce(c.furthest, 0)) OVER (ORDER BY s.position DESC))::bigint AS reached
  FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
  LEFT JOIN counts AS c USING (step)
 ORDER BY s.position;
