-- name: popular_items(kind, top)
-- Returns the `top` most requested items of a kind ('features' or 'integrations') across all
-- requirements {name, count, share}: names grouped trimmed and case-folded, shown in their
-- most common spelling (the first in sort order on a tie, as mode() would), share being the
-- fraction of requirements that ask for it. Read from the kept requirement_item_names.
SELECT (array_agg(name ORDER BY items DESC, name))[1] AS name,
       sum(items)::bigint AS count,
       sum(items)::float8 / (SELECT n FROM row_counts WHERE table_name = 'requirements') AS share
  FROM requirement_item_names
 WHERE kind = :kind AND items > 0
 GROUP BY normalized
 ORDER BY sum(items) DESC, normalized
 LIMIT :top;
