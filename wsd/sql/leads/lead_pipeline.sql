-- name: lead_pipeline()
-- Returns the 7 steps in funnel order, each {step, count, leads}: how many leads are at the
-- step now, and the 20 most recently updated of them as summaries (with their
-- conversation's agent_enabled, NULL without one).
SELECT s.step,
       (SELECT c.current FROM lead_step_counts AS c WHERE c.step = s.step) AS count,
       coalesce((
           SELECT json_agg(x.summary ORDER BY x.updated_at DESC, x.id DESC)
             FROM (SELECT l.id, l.updated_at, lead_summary(l, u, c.agent_enabled) AS summary
                     FROM lead_qualifications AS l
                     JOIN users AS u ON u.id = l.user_id
                     LEFT JOIN conversations AS c ON c.id = l.conversation_id
                    WHERE l.current_step = s.step
                    ORDER BY l.updated_at DESC, l.id DESC
                    LIMIT 20) AS x), '[]'::json) AS leads
  FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
 ORDER BY s.position;
