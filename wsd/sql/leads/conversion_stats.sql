-- name: conversion_stats()
-- Returns one row per consecutive pair of steps {from_step, to_step, reached_from,
-- reached_to, rate, median_hours}: how many leads ever reached each step (their furthest
-- step, so moving a lead back does not shrink the funnel), reached_to / reached_from (0 when
-- nobody reached from_step), and the median hours between first entering the two steps.
WITH steps AS (
    SELECT step, position FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
), furthest AS (
    SELECT furthest_step, count(*) AS leads FROM lead_qualifications GROUP BY furthest_step
), pairs AS (
    SELECT a.position, a.step AS from_step, b.step AS to_step,
           (SELECT coalesce(sum(leads), 0) FROM furthest WHERE furthest_step >= a.step)::bigint AS reached_from,
           (SELECT coalesce(sum(leads), 0) FROM furthest WHERE furthest_step >= b.step)::bigint AS reached_to
      FROM steps AS a JOIN steps AS b ON b.position = a.position + 1
)
SELECT p.from_step, p.to_step, p.reached_from, p.reached_to,
       CASE WHEN p.reached_from = 0 THEN 0 ELSE p.reached_to::float8 / p.reached_from END AS rate,
       (SELECT percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM entered.entered_at - left_from.entered_at) / 3600)
          FROM lead_step_entries AS left_from
          JOIN lead_step_entries AS entered
            ON entered.lead_id = left_from.lead_id AND entered.step = p.to_step
         WHERE left_from.step = p.from_step) AS median_hours
  FROM pairs AS p
 ORDER BY p.position;
