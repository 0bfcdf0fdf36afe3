-- name: period_popular_items(kind, top, since, until)
-- Returns the `top` most requested items of a kind ('features' or 'integrations') in the
-- requirements of the leads created in [since, until) {name, count, share}: grouped like
-- popular_items (trimmed, case-folded, most common spelling, first in sort order on a tie),
-- share being the fraction of those requirements that ask for it (0 when there are none).
WITH period_requirements AS (
    SELECT r.id FROM lead_qualifications AS l JOIN requirements AS r ON r.lead_id = l.id
     WHERE l.created_at >= :since AND l.created_at < :until
), items AS (
    SELECT i.name FROM period_requirements AS r JOIN features AS i ON i.requirements_id = r.id
     WHERE :kind = 'features'
    UNION ALL
    SELECT i.name FROM period_requirements AS r JOIN integrations AS i ON i.requirements_id = r.id
     WHERE :kind = 'integrations'
), spellings AS (
    SELECT normalized_name(name) AS normalized, name, count(*) AS items FROM items GROUP BY 1, 2
)
SELECT (array_agg(name ORDER BY items DESC, name))[1] AS name,
       sum(items)::bigint AS count,
       sum(items)::float8 / greatest((SELECT count(*) FROM period_requirements), 1) AS share
  FROM spellings
 GROUP BY normalized
 ORDER BY sum(items) DESC, normalized
 LIMIT :top;
