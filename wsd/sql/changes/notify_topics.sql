-- name: notify_topics(topics)!
-- Announces the topics a write declares it changes on `wsd_changes` as {"topic": ...}, in the
-- write's transaction (delivered at commit). The same payload as the tables' triggers, so
-- PostgreSQL folds the two into one notification per topic.
SELECT pg_notify('wsd_changes', json_build_object('topic', topic)::text)
  FROM unnest(:topics::text[]) AS topic;
