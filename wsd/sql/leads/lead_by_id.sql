-- name: lead_by_id(lead_id)$
-- Returns the leads-list document of one lead, or NULL for an unknown id.
SELECT lead_document(l, u, b, r)
  FROM lead_qualifications AS l
  JOIN users AS u ON u.id = l.user_id
  LEFT JOIN bant_data AS b ON b.lead_id = l.id
  LEFT JOIN requirements AS r ON r.lead_id = l.id
 WHERE l.id = :lead_id;
