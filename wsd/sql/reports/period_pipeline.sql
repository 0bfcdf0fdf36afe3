-- name: period_pipeline(since, until)
-- Returns the 7 steps in funnel order, each {step, count, leads} over the leads created in
-- [since, until): how many of them are at the step now (kept lead_cohort_counts), and the 20
-- most recently updated of them as the pipeline's summaries (with their conversation's
-- agent_enabled, NULL without one).
SELECT s.step,
       coalesce((SELECT sum(c.current) FROM lead_cohort_counts AS c
                  WHERE c.step = s.step AND c.quarter >= :since AND c.quarter < :until), 0)::bigint AS count,
       coalesce((
           SELECT json_agg(json_build_object(
                      'id', x.id, 'user_id', x.user_id, 'full_name', x.full_name,
                      'company', x.company, 'email', x.email, 'consent', x.consent,
                      'agent_enabled', x.agent_enabled,
                      'created_at', x.created_at, 'updated_at', x.updated_at)
                  ORDER BY x.updated_at DESC, x.id DESC)
             FROM (SELECT l.id, l.user_id, u.full_name, u.company, u.email, l.consent,
                          l.created_at, l.updated_at, c.agent_enabled
                     FROM lead_qualifications AS l
                     JOIN users AS u ON u.id = l.user_id
                     LEFT JOIN conversations AS c ON c.id = l.conversation_id
                    WHERE l.current_step = s.step AND l.created_at >= :since AND l.created_at < :until
                    ORDER BY l.updated_at DESC, l.id DESC
                    LIMIT 20) AS x), '[]'::json) AS leads
  FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
 ORDER BY s.position;
