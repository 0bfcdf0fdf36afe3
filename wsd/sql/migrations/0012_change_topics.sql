-- Topic notifications from every write, including the AI agent's writes straight into
-- PostgreSQL: one statement-level trigger per table and operation announces the table's
-- topic on `wsd_changes` as {"topic": ...} when the statement changed rows. PostgreSQL folds
-- identical notifications of one transaction into one, so a transaction raises each topic
-- at most once however many rows and statements it has (NOTIFY takes a global lock at
-- commit: never one per row). The table → topic list is wsd/topics.py's TABLE_TOPICS.
CREATE FUNCTION notify_topic() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed_rows) THEN
        PERFORM pg_notify('wsd_changes', json_build_object('topic', TG_ARGV[0])::text);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION notify_topic_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wsd_changes', json_build_object('topic', TG_ARGV[0])::text);
    RETURN NULL;
END $$;

DO $$
DECLARE
    pair record;
    operation record;
BEGIN
    FOR pair IN SELECT * FROM (VALUES
        ('users', 'users'), ('conversations', 'conversations'),
        ('agent_status_changes', 'conversations'), ('messages', 'messages'),
        ('lead_qualifications', 'leads'), ('lead_step_history', 'leads'), ('bant_data', 'leads'),
        ('requirements', 'requirements'), ('features', 'requirements'),
        ('integrations', 'requirements'), ('meetings', 'meetings'), ('outlook_busy', 'meetings')
    ) AS t (table_name, topic) LOOP
        FOR operation IN SELECT * FROM (VALUES ('insert', 'NEW'), ('update', 'NEW'), ('delete', 'OLD'))
                                    AS o (name, transition) LOOP
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %I REFERENCING %s TABLE AS changed_rows '
                           'FOR EACH STATEMENT EXECUTE FUNCTION notify_topic(%L)',
                           pair.table_name || '_' || operation.name || '_topic', upper(operation.name),
                           pair.table_name, operation.transition, pair.topic);
        END LOOP;
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION notify_topic_on_truncate(%L)',
                       pair.table_name || '_truncate_topic', pair.table_name, pair.topic);
    END LOOP;
END $$;
