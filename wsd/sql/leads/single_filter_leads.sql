-- name: single_filter_leads(driver, entered_step, entered_since, entered_until, meeting_status, wants_feature, wants_integration, wanted_since, wanted_until, search, count_all, after_created_at, after_id, page_size)
-- Returns the leads of a filter given alone, newest first, up to page_size after the keyset
-- (after_created_at, after_id), as filtered_leads does: rows of {created_at, id, lead,
-- total} (total NULL unless count_all; a page past the end is one row with a NULL lead).
-- `driver` names the filter: 'entered' (first entered entered_step in [entered_since,
-- entered_until)), 'meeting' (a meeting of meeting_status, as clients see it),
-- 'wants_feature' or 'wants_integration' (an item of that name, trimmed and case-folded,
-- added in [wanted_since, wanted_until) when given) or 'search' (name, email or company).
-- Each is read its own way: the few leads with a scheduled meeting (a meeting yet to be held)
-- are found from the meetings; for the others, whose matches are many (completed and
-- cancelled meetings pile up, and so do step entries, items and names), the page walks the leads newest
-- first and probes each (a plain per-lead check, OFFSET 0 keeping PostgreSQL from hashing
-- every match first).
-- The total counts the filter rows alone (one entry per lead and step, one item per lead and
-- name, one lead per user).
-- Run it after plan_each_call, so the drivers not named fold away.
WITH counted AS NOT MATERIALIZED (  -- one row per matching lead
    SELECT e.lead_id AS id FROM lead_step_entries AS e
     WHERE :driver::text = 'entered' AND e.step = :entered_step::lead_step
       AND e.entered_at >= :entered_since::timestamptz AND e.entered_at < :entered_until::timestamptz
    UNION ALL
    SELECT DISTINCT m.lead_id FROM meetings AS m  -- the stored status a shown one comes from
     WHERE :driver::text = 'meeting'
       AND m.status = ANY (CASE WHEN :meeting_status::text = 'completed' THEN ARRAY['completed', 'scheduled']
                                ELSE ARRAY[:meeting_status::text] END)
       AND meeting_status(m) = :meeting_status::text
    UNION ALL
    SELECT f.id FROM features AS f
     WHERE :driver::text = 'wants_feature' AND normalized_name(f.name) = normalized_name(:wants_feature::text)
       AND (:wanted_since::timestamptz IS NULL
            OR (f.created_at >= :wanted_since::timestamptz AND f.created_at < :wanted_until::timestamptz))
    UNION ALL
    SELECT i.id FROM integrations AS i
     WHERE :driver::text = 'wants_integration' AND normalized_name(i.name) = normalized_name(:wants_integration::text)
       AND (:wanted_since::timestamptz IS NULL
            OR (i.created_at >= :wanted_since::timestamptz AND i.created_at < :wanted_until::timestamptz))
    UNION ALL
    SELECT l.id FROM users AS u JOIN lead_qualifications AS l ON l.user_id = u.id
     WHERE :driver::text = 'search'
       AND user_search_text(u.full_name, u.email, u.company) LIKE contains_pattern(:search::text)
), page AS (
    (SELECT l.id, l.created_at FROM lead_qualifications AS l
      WHERE :driver::text = 'entered' AND EXISTS (
                SELECT 1 FROM lead_step_entries AS e
                 WHERE e.lead_id = l.id AND e.step = :entered_step::lead_step
                   AND e.entered_at >= :entered_since::timestamptz AND e.entered_at < :entered_until::timestamptz
                OFFSET 0)
        AND (:after_created_at::timestamptz IS NULL
             OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
      ORDER BY l.created_at DESC, l.id DESC LIMIT :page_size)
    UNION ALL
    (SELECT l.id, l.created_at FROM lead_qualifications AS l
      WHERE :driver::text = 'meeting' AND :meeting_status::text = 'scheduled' AND l.id IN (SELECT id FROM counted)
        AND (:after_created_at::timestamptz IS NULL
             OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
      ORDER BY l.created_at DESC, l.id DESC LIMIT :page_size)
    UNION ALL
    (SELECT l.id, l.created_at FROM lead_qualifications AS l
      WHERE :driver::text = 'meeting' AND :meeting_status::text <> 'scheduled' AND EXISTS (
                SELECT 1 FROM meetings AS m WHERE m.lead_id = l.id AND meeting_status(m) = :meeting_status::text
                OFFSET 0)
        AND (:after_created_at::timestamptz IS NULL
             OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
      ORDER BY l.created_at DESC, l.id DESC LIMIT :page_size)
    UNION ALL
    (SELECT l.id, l.created_at FROM lead_qualifications AS l
      WHERE :driver::text = 'wants_feature' AND EXISTS (
                SELECT 1 FROM requirements AS r JOIN features AS f ON f.requirements_id = r.id
                 WHERE r.lead_id = l.id AND normalized_name(f.name) = normalized_name(:wants_feature::text)
                   AND (:wanted_since::timestamptz IS NULL
                        OR (f.created_at >= :wanted_since::timestamptz AND f.created_at < :wanted_until::timestamptz))
                OFFSET 0)
        AND (:after_created_at::timestamptz IS NULL
             OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
      ORDER BY l.created_at DESC, l.id DESC LIMIT :page_size)
    UNION ALL
    (SELECT l.id, l.created_at FROM lead_qualifications AS l
      WHERE :driver::text = 'wants_integration' AND EXISTS (
                SELECT 1 FROM requirements AS r JOIN integrations AS i ON i.requirements_id = r.id
                 WHERE r.lead_id = l.id AND normalized_name(i.name) = normalized_name(:wants_integration::text)
                   AND (:wanted_since::timestamptz IS NULL
                        OR (i.created_at >= :wanted_since::timestamptz AND i.created_at < :wanted_until::timestamptz))
                OFFSET 0)
        AND (:after_created_at::timestamptz IS NULL
             OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
      ORDER BY l.created_at DESC, l.id DESC LIMIT :page_size)
    UNION ALL
    (SELECT l.id, l.created_at FROM lead_qualifications AS l
      WHERE :driver::text = 'search' AND EXISTS (
                SELECT 1 FROM users AS u
                 WHERE u.id = l.user_id
                   AND user_search_text(u.full_name, u.email, u.company) LIKE contains_pattern(:search::text)
                OFFSET 0)
        AND (:after_created_at::timestamptz IS NULL
             OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
      ORDER BY l.created_at DESC, l.id DESC LIMIT :page_size)
)
SELECT p.created_at, p.id, CASE WHEN p.id IS NOT NULL THEN lead_document(l, u, b, r) END AS lead, t.total
  FROM (SELECT CASE WHEN :count_all::boolean THEN (SELECT count(*) FROM counted) END AS total) AS t
  LEFT JOIN page AS p ON true
  LEFT JOIN lead_qualifications AS l ON l.id = p.id
  LEFT JOIN users AS u ON u.id = l.user_id
  LEFT JOIN bant_data AS b ON b.lead_id = l.id
  LEFT JOIN requirements AS r ON r.lead_id = l.id
 ORDER BY p.created_at DESC, p.id DESC;
