-- name: conversion_stats()
-- Returns one row per consecutive pair of steps {from_step, to_step, reached_from,
-- reached_to, rate, median_hours}: how many leads ever reached each step (their furthest
-- step, so moving a lead back does not shrink the funnel), reached_to / reached_from (0 when
-- nobody reached from_step), and the median hours between first entering the two steps
-- over the leads that entered both (NULL when none did).
WITH reached AS (
    SELECT step, reached AS leads, lead(step) OVER (ORDER BY step) AS next_step
      FROM lead_step_reach
)
SELECT f.step AS from_step, t.step AS to_step, f.leads AS reached_from, t.leads AS reached_to,
       CASE WHEN f.leads = 0 THEN 0 ELSE t.leads::float8 / f.leads END AS rate,
       (SELECT percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM entered.entered_at - left_from.entered_at) / 3600)
          FROM lead_step_entries AS left_from
          JOIN lead_step_entries AS entered
            ON entered.lead_id = left_from.lead_id AND entered.step = t.step
         WHERE left_from.step = f.step) AS median_hours
  FROM reached AS f
  JOIN reached AS t ON t.step = f.next_step
 ORDER BY f.step;
