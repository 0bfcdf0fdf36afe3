-- name: lead_step_count_differences()
-- Returns {key, kept, recomputed} for each step whose kept current/furthest counts (0002)
-- differ from the counts over lead_qualifications.
SELECT s.step::text AS key,
       coalesce(k.current, 0) || ' current, ' || coalesce(k.furthest, 0) || ' furthest' AS kept,
       r.current || ' current, ' || r.furthest || ' furthest' AS recomputed
  FROM unnest(enum_range(NULL::lead_step)) AS s(step)
  LEFT JOIN lead_step_counts AS k USING (step)
 CROSS JOIN LATERAL (
       SELECT (SELECT count(*) FROM lead_qualifications WHERE current_step = s.step) AS current,
              (SELECT count(*) FROM lead_qualifications WHERE furthest_step = s.step) AS furthest) AS r
 WHERE (coalesce(k.current, 0), coalesce(k.furthest, 0)) <> (r.current, r.furthest)
 ORDER BY s.step;
