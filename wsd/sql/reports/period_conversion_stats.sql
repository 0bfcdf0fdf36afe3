-- name: period_conversion_stats(since, until)
-- Returns one row per consecutive pair of steps {from_step, to_step, reached_from,
-- reached_to, rate, median_hours} over a period: reached_* count the leads created in
-- [since, until) whose furthest step is at or past the step (kept lead_cohort_counts);
-- rate = reached_to / reached_from (0 when nobody reached from_step); median_hours is
-- percentile_cont(0.5) of the hours from first entering from_step to first entering
-- to_step, over the leads that first entered to_step in [since, until) (NULL when none did),
-- read from one range of lead_step_entries_step_entered_idx per step.
WITH cohort AS (
    SELECT step, sum(furthest) AS furthest
      FROM lead_cohort_counts
     WHERE quarter >= :since AND quarter < :until
     GROUP BY step
), reached AS (
    SELECT s.step, s.position,
           (sum(coalesce(c.furthest, 0)) OVER (ORDER BY s.position DESC))::bigint AS leads
      FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
      LEFT JOIN cohort AS c USING (step)
)
SELECT f.step AS from_step, t.step AS to_step, f.leads AS reached_from, t.leads AS reached_to,
       CASE WHEN f.leads = 0 THEN 0 ELSE t.leads::float8 / f.leads END AS rate,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY e.hours_from_previous)
          FROM lead_step_entries AS e
         WHERE e.step = t.step AND e.entered_at >= :since AND e.entered_at < :until
           AND e.hours_from_previous IS NOT NULL) AS median_hours
  FROM reached AS f
  JOIN reached AS t ON t.position = f.position + 1
 ORDER BY f.position;
