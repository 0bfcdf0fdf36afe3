-- name: popular_integrations(top)
-- Returns the `top` most requested integrations across all requirements {name, count,
-- share}: grouped and shown as popular_features does.
SELECT mode() WITHIN GROUP (ORDER BY i.name) AS name,
       count(*) AS count,
       count(*)::float8 / (SELECT count(*) FROM requirements) AS share
  FROM integrations AS i
 GROUP BY normalized_name(i.name)
 ORDER BY count(*) DESC, normalized_name(i.name)
 LIMIT :top;
