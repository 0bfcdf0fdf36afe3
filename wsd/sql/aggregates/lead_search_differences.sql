-- name: lead_search_differences()
-- Returns {key, kept, recomputed} for each lead whose kept search text (lead_search, 0017)
-- differs from its user's user_search_text, or that has one without the other (first 20).
SELECT coalesce(k.lead_id, r.lead_id)::text AS key, k.text AS kept, r.text AS recomputed
  FROM lead_search AS k
  FULL JOIN recomputed_lead_search() AS r USING (lead_id)
 WHERE k.text IS DISTINCT FROM r.text
 ORDER BY 1
 LIMIT 20;
