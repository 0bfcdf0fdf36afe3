-- name: exact_conversion_medians()
-- Returns {to_step, median_hours} for each step after `start`: the median hours between
-- first entering the step before it and it, over the leads that entered both, computed with
-- percentile_cont over every pair of entries (what conversion_stats reads from kept rows).
SELECT t.step AS to_step,
       (SELECT percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY step_hours(entered.entered_at, left_from.entered_at))
          FROM lead_step_entries AS left_from
          JOIN lead_step_entries AS entered
            ON entered.lead_id = left_from.lead_id AND entered.step = t.step
         WHERE left_from.step = previous_step(t.step)) AS median_hours
  FROM unnest(enum_range(NULL::lead_step)) AS t(step)
 WHERE t.step > 'start'
 ORDER BY t.step;
