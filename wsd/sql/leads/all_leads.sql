-- name: all_leads(step, search, after_created_at, after_id, page_size)
-- Returns up to page_size leads, newest first, after the keyset (after_created_at, after_id)
-- when one is given, optionally of one step and matching a search of name, email or
-- company: rows of {created_at, id, lead} where lead is the leads-list document.
SELECT l.created_at, l.id, lead_document(l, u, b, r) AS lead
  FROM lead_qualifications AS l
  JOIN users AS u ON u.id = l.user_id
  LEFT JOIN bant_data AS b ON b.lead_id = l.id
  LEFT JOIN requirements AS r ON r.lead_id = l.id
 WHERE (:step::lead_step IS NULL OR l.current_step = :step::lead_step)
   AND (:search::text IS NULL
        OR user_search_text(u.full_name, u.email, u.company) LIKE contains_pattern(:search::text))
   AND (:after_created_at::timestamptz IS NULL
        OR (l.created_at, l.id) < (:after_created_at::timestamptz, :after_id::uuid))
 ORDER BY l.created_at DESC, l.id DESC
 LIMIT :page_size;
