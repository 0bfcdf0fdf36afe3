-- name: filtered_leads(step, reached, created_since, created_until, entered_step, entered_since, entered_until, agent_on, stalled, now, stalled_hours, meeting_status, wants_feature, wants_integration, wanted_since, wanted_until, search, count_all, after_created_at, after_id, page_size)
-- Returns the leads matching every given filter (NULL: not filtered), newest first, up to
-- page_size after the keyset (after_created_at, after_id): rows of {created_at, id, lead,
-- total}, total being the count of every matching lead (not only this page; NULL unless
-- count_all, for a caller that has it from kept counts). Filters: step
-- now; furthest step at or past `reached`; created in [created_since, created_until); first
-- entered entered_step in [entered_since, entered_until); agent on/off in the lead's
-- conversation (off without one); stalled or not (at its step longer than that step's
-- stalled_hours, 7 float8 in funnel order, NULL: never, measured at `now`); a meeting of
-- that status (as clients see it); a feature or integration of that name (trimmed,
-- case-folded), added in [wanted_since, wanted_until) when given; a search of name, email or
-- company. A page past the end is one row with a NULL lead, carrying the total. Run it after plan_each_call: a generic
-- plan would read every lead whatever the filter.
WITH cutoffs AS (  -- per step: entered before this, stalled (never: -infinity)
    SELECT s.step, coalesce(:now::timestamptz - make_interval(secs => t.hours * 3600),
                            '-infinity'::timestamptz) AS cutoff
      FROM unnest(enum_range(NULL::lead_step)) WITH ORDINALITY AS s(step, position)
      JOIN unnest(:stalled_hours::float8[]) WITH ORDINALITY AS t(hours, position) USING (position)
), matched AS NOT MATERIALIZED (  -- the page and the count each plan their own read
    SELECT l.id, l.created_at
      FROM lead_qualifications AS l
     WHERE (:step::lead_step IS NULL OR l.current_step = :step::lead_step)
       AND (:reached::lead_step IS NULL OR l.furthest_step >= :reached::lead_step)
       AND (:created_since::timestamptz IS NULL
            OR (l.created_at >= :created_since::timestamptz AND l.created_at < :created_until::timestamptz))
       AND (:entered_step::lead_step IS NULL OR EXISTS (
               SELECT 1 FROM lead_step_entries AS e
                WHERE e.lead_id = l.id AND e.step = :entered_step::lead_step
                  AND e.entered_at >= :entered_since::timestamptz AND e.entered_at < :entered_until::timestamptz))
       AND (:agent_on::boolean IS NULL OR l.agent_on = :agent_on::boolean)
       AND (:stalled::boolean IS NULL OR EXISTS (
               SELECT 1 FROM cutoffs AS c
                WHERE c.step = l.current_step AND (l.step_entered_at < c.cutoff) = :stalled::boolean))
       AND (:meeting_status::text IS NULL OR EXISTS (
               SELECT 1 FROM meetings AS m WHERE m.lead_id = l.id AND meeting_status(m) = :meeting_status::text))
       AND (:wants_feature::text IS NULL OR EXISTS (
               SELECT 1 FROM requirements AS r JOIN features AS f ON f.requirements_id = r.id
                WHERE r.lead_id = l.id AND normalized_name(f.name) = normalized_name(:wants_feature::text)
                  AND (:wanted_since::timestamptz IS NULL
                       OR (f.created_at >= :wanted_since::timestamptz AND f.created_at < :wanted_until::timestamptz))))
       AND (:wants_integration::text IS NULL OR EXISTS (
               SELECT 1 FROM requirements AS r JOIN integrations AS i ON i.requirements_id = r.id
                WHERE r.lead_id = l.id AND normalized_name(i.name) = normalized_name(:wants_integration::text)
                  AND (:wanted_since::timestamptz IS NULL
                       OR (i.created_at >= :wanted_since::timestamptz AND i.created_at < :wanted_until::timestamptz))))
       AND (:search::text IS NULL OR EXISTS (
               SELECT 1 FROM users AS u WHERE u.id = l.user_id
                  AND user_search_text(u.full_name, u.email, u.company) LIKE contains_pattern(:search::text)))
), page AS (
    SELECT id, created_at FROM matched
     WHERE :after_created_at::timestamptz IS NULL
        OR (created_at, id) < (:after_created_at::timestamptz, :after_id::uuid)
     ORDER BY created_at DESC, id DESC
     LIMIT :page_size
)
SELECT p.created_at, p.id, CASE WHEN p.id IS NOT NULL THEN lead_document(l, u, b, r) END AS lead, t.total
  FROM (SELECT CASE WHEN :count_all::boolean THEN (SELECT count(*) FROM matched) END AS total) AS t
  LEFT JOIN page AS p ON true
  LEFT JOIN lead_qualifications AS l ON l.id = p.id
  LEFT JOIN users AS u ON u.id = l.user_id
  LEFT JOIN bant_data AS b ON b.lead_id = l.id
  LEFT JOIN requirements AS r ON r.lead_id = l.id
 ORDER BY p.created_at DESC, p.id DESC;
