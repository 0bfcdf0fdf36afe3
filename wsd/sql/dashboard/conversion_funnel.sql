-- name: conversion_funnel()
-- Returns the 7 steps in funnel order {step, reached, rate_from_previous, rate_from_start}:
-- leads whose furthest step is at or past it, and that count over the previous step's and
-- over `start`'s (0 when the divisor is 0; the first step's previous is itself).
SELECT step, reached,
       CASE WHEN coalesce(lag(reached) OVER w, reached) = 0 THEN 0
            ELSE reached::float8 / coalesce(lag(reached) OVER w, reached) END AS rate_from_previous,
       CASE WHEN first_value(reached) OVER w = 0 THEN 0
            ELSE reached::float8 / first_value(reached) OVER w END AS rate_from_start
  FROM lead_step_reach
WINDOW w AS (ORDER BY step)
 ORDER BY step;
