-- name: popular_items(kind, top)
-- Returns the `top` most requested items of a kind ('features' or 'integrations') across all
-- requirements {name, count, share}: names grouped trimmed and case-folded, shown in their
-- most common spelling, share being the fraction of requirements that ask for it.
SELECT mode() WITHIN GROUP (ORDER BY i.name) AS name,
       count(*) AS count,
       count(*)::float8 / (SELECT count(*) FROM requirements) AS share
  FROM requirement_items AS i
 WHERE i.kind = :kind
 GROUP BY normalized_name(i.name)
 ORDER BY count(*) DESC, normalized_name(i.name)
 LIMIT :top;
