-- name: period_conversion_stats(since, until)
-- Returns one row per consecutive pair of steps {from_step, to_step, reached_from,
-- reached_to, rate, median_hours} over a period: reached_* count the leads created in
-- [since, until) whose furthest step is at or past the step (kept counts, cohort_in);
-- rate = reached_to / reached_from (0 when nobody reached from_step); median_hours is
-- exactly percentile_cont(0.5) of the hours from first entering from_step to first
-- entering to_step, over the leads that first entered to_step in [since, until) (NULL when
-- none did). The period's per-hour histogram (kept whole UTC days of step_interval_days,
-- raw partial days at its ends) locates the hour holding each middle rank, read then from
-- lead_step_entries_interval_value_idx.
WITH whole AS (  -- [first, last): the whole UTC days inside the period (may be empty)
    SELECT first, greatest(utc_day(:until::timestamptz), first) AS last
      FROM (SELECT least(CASE WHEN utc_day(:since::timestamptz) = :since::timestamptz THEN :since::timestamptz
                              ELSE utc_day(:since::timestamptz) + interval '1 day' END,
                         :until::timestamptz) AS first) AS f
), cohort AS (
    SELECT step, furthest FROM cohort_in(:since::timestamptz, :until::timestamptz)
), reached AS (
    SELECT s.step, s.position,
           (sum(coalesce(c.furthest, 0)) OVER (ORDER BY s.position DESC))::bigint AS leads
      FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
      LEFT JOIN cohort AS c USING (step)
), hours AS (
    SELECT step, hour_bucket, sum(leads)::bigint AS leads
      FROM (SELECT c.step, c.hour_bucket, c.leads FROM step_interval_days AS c, whole AS w
             WHERE c.day >= w.first AND c.day < w.last
            UNION ALL  -- the ends as separate ranges (an OR of them would read every entry)
            SELECT e.step, floor(e.hours_from_previous)::bigint, 1 FROM whole AS w, lead_step_entries AS e
             WHERE e.hours_from_previous IS NOT NULL
               AND e.entered_at >= :since::timestamptz AND e.entered_at < w.first
            UNION ALL
            SELECT e.step, floor(e.hours_from_previous)::bigint, 1 FROM whole AS w, lead_step_entries AS e
             WHERE e.hours_from_previous IS NOT NULL
               AND e.entered_at >= w.last AND e.entered_at < :until::timestamptz) AS p
     GROUP BY step, hour_bucket
    HAVING sum(leads) <> 0
), running AS (
    SELECT step, hour_bucket, leads, sum(leads) OVER (PARTITION BY step ORDER BY hour_bucket) AS through,
           sum(leads) OVER (PARTITION BY step) AS total
      FROM hours
), fractions AS (
    SELECT DISTINCT step, 0.5 * (total - 1)::float8 AS position FROM running
), located AS (
    -- Each middle rank (0-based), with the hour holding it, its rank within that hour and
    -- the hour's entries in the period.
    SELECT r.step, r.rank, h.hour_bucket, r.rank - (h.through - h.leads) AS rank_in_hour, h.leads
      FROM (SELECT step, floor(position)::bigint AS rank FROM fractions
            UNION SELECT step, ceil(position)::bigint FROM fractions) AS r
      JOIN running AS h ON h.step = r.step AND r.rank >= h.through - h.leads AND r.rank < h.through
), valued AS (
    -- The value at each rank: an OFFSET into the hour's entries in value order
    -- (lead_step_entries_interval_value_idx, the period checked in the index), counted from
    -- the nearer end of the hour.
    SELECT l.step, l.rank,
           CASE WHEN l.rank_in_hour <= l.leads - 1 - l.rank_in_hour THEN
               (SELECT e.hours_from_previous FROM lead_step_entries AS e
                 WHERE e.step = l.step AND e.hours_from_previous IS NOT NULL
                   AND floor(e.hours_from_previous) = l.hour_bucket::float8
                   AND e.entered_at >= :since::timestamptz AND e.entered_at < :until::timestamptz
                 ORDER BY e.hours_from_previous
                OFFSET l.rank_in_hour LIMIT 1)
           ELSE
               (SELECT e.hours_from_previous FROM lead_step_entries AS e
                 WHERE e.step = l.step AND e.hours_from_previous IS NOT NULL
                   AND floor(e.hours_from_previous) = l.hour_bucket::float8
                   AND e.entered_at >= :since::timestamptz AND e.entered_at < :until::timestamptz
                 ORDER BY e.hours_from_previous DESC
                OFFSET l.leads - 1 - l.rank_in_hour LIMIT 1) END AS hours
      FROM located AS l
), medians AS (
    -- percentile_cont's interpolation: lo + (hi - lo) * (position - floor).
    SELECT f.step, CASE WHEN lo.rank = hi.rank THEN lo.hours
                        ELSE lo.hours + (hi.hours - lo.hours) * (f.position - floor(f.position)) END AS hours
      FROM fractions AS f
      JOIN valued AS lo ON lo.step = f.step AND lo.rank = floor(f.position)::bigint
      JOIN valued AS hi ON hi.step = f.step AND hi.rank = ceil(f.position)::bigint
)
SELECT f.step AS from_step, t.step AS to_step, f.leads AS reached_from, t.leads AS reached_to,
       CASE WHEN f.leads = 0 THEN 0 ELSE t.leads::float8 / f.leads END AS rate,
       m.hours AS median_hours
  FROM reached AS f
  JOIN reached AS t ON t.position = f.position + 1
  LEFT JOIN medians AS m ON m.step = t.step
 ORDER BY f.position;
