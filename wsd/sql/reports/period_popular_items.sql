-- name: period_popular_items(kind, top, since, until)
-- Returns the `top` items of a kind ('features' or 'integrations') most often added in
-- [since, until) {name, count, share}: grouped like popular_items (trimmed, case-folded,
-- most common spelling, first in sort order on a tie), share being count over the
-- requirements created in the period (0 when there are none). Whole UTC days from the kept
-- requirement_item_days, the partial days at the ends from the raw rows.
WITH whole AS (  -- [first, last): the whole UTC days inside the period (may be empty)
    SELECT first, greatest(utc_day(:until::timestamptz), first) AS last
      FROM (SELECT least(CASE WHEN utc_day(:since::timestamptz) = :since::timestamptz THEN :since::timestamptz
                              ELSE utc_day(:since::timestamptz) + interval '1 day' END,
                         :until::timestamptz) AS first) AS f
), counted AS (
    SELECT c.normalized, c.name, c.items FROM requirement_item_days AS c, whole AS w
     WHERE c.kind = :kind AND c.day >= w.first AND c.day < w.last
    UNION ALL  -- the ends as separate ranges (an OR of them would read every item)
    SELECT normalized_name(i.name), i.name, 1 FROM whole AS w, features AS i
     WHERE :kind = 'features' AND i.created_at >= :since::timestamptz AND i.created_at < w.first
    UNION ALL
    SELECT normalized_name(i.name), i.name, 1 FROM whole AS w, features AS i
     WHERE :kind = 'features' AND i.created_at >= w.last AND i.created_at < :until::timestamptz
    UNION ALL
    SELECT normalized_name(i.name), i.name, 1 FROM whole AS w, integrations AS i
     WHERE :kind = 'integrations' AND i.created_at >= :since::timestamptz AND i.created_at < w.first
    UNION ALL
    SELECT normalized_name(i.name), i.name, 1 FROM whole AS w, integrations AS i
     WHERE :kind = 'integrations' AND i.created_at >= w.last AND i.created_at < :until::timestamptz
), requirements_in AS (
    SELECT coalesce((SELECT sum(c.items) FROM requirement_item_days AS c, whole AS w
                      WHERE c.kind = 'requirements' AND c.day >= w.first AND c.day < w.last), 0)
           + (SELECT count(*) FROM whole AS w, requirements AS r
               WHERE r.created_at >= :since::timestamptz AND r.created_at < w.first)
           + (SELECT count(*) FROM whole AS w, requirements AS r
               WHERE r.created_at >= w.last AND r.created_at < :until::timestamptz) AS n
), spellings AS (
    SELECT normalized, name, sum(items) AS items FROM counted GROUP BY 1, 2 HAVING sum(items) <> 0
)
SELECT (array_agg(s.name ORDER BY s.items DESC, s.name))[1] AS name,
       sum(s.items)::bigint AS count,
       sum(s.items)::float8 / greatest(max(r.n), 1) AS share
  FROM spellings AS s, requirements_in AS r
 GROUP BY s.normalized
 ORDER BY sum(s.items) DESC, s.normalized
 LIMIT :top;
