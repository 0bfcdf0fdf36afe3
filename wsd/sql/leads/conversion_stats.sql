-- name: conversion_stats()
-- Returns one row per consecutive pair of steps {from_step, to_step, reached_from,
-- reached_to, rate, median_hours}: how many leads ever reached each step (their furthest
-- step, so moving a lead back does not shrink the funnel), reached_to / reached_from (0 when
-- nobody reached from_step), and the median hours between first entering the two steps
-- over the leads that entered both (NULL when none did). The median is exact
-- (percentile_cont): the kept per-hour counts find the hour holding the middle rank, then
-- one short range of lead_step_entries_hours_idx reads the middle value(s).
WITH reached AS (
    SELECT step, reached AS leads, lead(step) OVER (ORDER BY step) AS next_step
      FROM lead_step_reach
), intervals AS (
    SELECT step, hour_bucket, leads,
           sum(leads) OVER (PARTITION BY step ORDER BY hour_bucket) AS through,
           sum(leads) OVER (PARTITION BY step) AS total
      FROM step_interval_counts
     WHERE leads > 0
), middles AS (
    -- Per step: the 0-based rank of the lower middle value, and the hour holding it.
    SELECT DISTINCT ON (step) step, total, 0.5 * (total - 1) AS position,
           floor(0.5 * (total - 1))::bigint - (through - leads) AS rank_in_hour, hour_bucket
      FROM intervals
     WHERE through > floor(0.5 * (total - 1))
     ORDER BY step, hour_bucket
), medians AS (
    SELECT m.step,
           CASE WHEN m.position = floor(m.position) THEN v.hours[1]
                ELSE v.hours[1] + (v.hours[2] - v.hours[1]) * (m.position - floor(m.position)) END AS hours
      FROM middles AS m
     CROSS JOIN LATERAL (
           SELECT array_agg(e.hours_from_previous ORDER BY e.hours_from_previous) AS hours
             FROM (SELECT hours_from_previous FROM lead_step_entries
                    WHERE step = m.step AND hours_from_previous IS NOT NULL
                      AND hours_from_previous >= m.hour_bucket
                    ORDER BY hours_from_previous
                   OFFSET m.rank_in_hour LIMIT 2) AS e) AS v
)
SELECT f.step AS from_step, t.step AS to_step, f.leads AS reached_from, t.leads AS reached_to,
       CASE WHEN f.leads = 0 THEN 0 ELSE t.leads::float8 / f.leads END AS rate,
       m.hours AS median_hours
  FROM reached AS f
  JOIN reached AS t ON t.step = f.next_step
  LEFT JOIN medians AS m ON m.step = t.step
 ORDER BY f.step;
