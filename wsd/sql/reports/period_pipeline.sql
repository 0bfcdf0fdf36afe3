-- name: period_pipeline(since, until)
-- Returns the 7 steps in funnel order, each {step, count, leads} over the leads created in
-- [since, until): how many of them are at the step now (kept counts, cohort_in), and the 20
-- newest of them as the pipeline's summaries (with their conversation's agent_enabled, NULL
-- without one): newest, not most recently updated, so that they are one range of
-- lead_qualifications_step_created_idx whatever the period's length.
WITH counts AS (
    SELECT step, current FROM cohort_in(:since, :until)
)
SELECT s.step, coalesce(n.current, 0)::bigint AS count,
       coalesce((
           SELECT json_agg(x.summary ORDER BY x.created_at DESC, x.id DESC)
             FROM (SELECT l.id, l.created_at, lead_summary(l, u, c.agent_enabled) AS summary
                     FROM lead_qualifications AS l
                     JOIN users AS u ON u.id = l.user_id
                     LEFT JOIN conversations AS c ON c.id = l.conversation_id
                    WHERE l.current_step = s.step AND l.created_at >= :since AND l.created_at < :until
                    ORDER BY l.created_at DESC, l.id DESC
                    LIMIT 20) AS x), '[]'::json) AS leads
  FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
  LEFT JOIN counts AS n USING (step)
 ORDER BY s.position;
