-- name: duplicate_names(names)^
-- Returns {first, second}: the 0-based positions of the first two names in the array that
-- are the same once normalized_name() folds them; no row when all differ.
SELECT a.position - 1 AS first, b.position - 1 AS second
  FROM unnest(:names::text[]) WITH ORDINALITY AS a(name, position)
  JOIN unnest(:names::text[]) WITH ORDINALITY AS b(name, position)
    ON normalized_name(a.name) = normalized_name(b.name) AND a.position < b.position
 ORDER BY b.position, a.position
 LIMIT 1;
