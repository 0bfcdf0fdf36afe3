-- name: notify_change(topic, id)$
-- Announces a committed write on `wsd_changes` as {"topic", "id"} (delivered at commit) so
-- caches and live views of every wsd instance learn of it. Returns nothing useful.
SELECT pg_notify('wsd_changes', json_build_object('topic', :topic::text, 'id', :id::uuid)::text);
