-- name: popular_features(top)
-- Returns the `top` most requested features across all requirements {name, count, share}:
-- names grouped trimmed and case-folded, shown in their most common spelling, share being
-- the fraction of requirements that ask for it.
SELECT mode() WITHIN GROUP (ORDER BY f.name) AS name,
       count(*) AS count,
       count(*)::float8 / (SELECT count(*) FROM requirements) AS share
  FROM features AS f
 GROUP BY normalized_name(f.name)
 ORDER BY count(*) DESC, normalized_name(f.name)
 LIMIT :top;
