-- What the dashboard aggregates need to stay cheap as data grows: reply delays stored when
-- the agent replies, when a conversation was first handled by the agent, a kept count of
-- users, and indexes for the time-window counts.

-- Seconds the agent took to answer, on an agent message that follows a user message.
ALTER TABLE messages ADD COLUMN response_seconds double precision;
-- When the agent first wrote in the conversation: NULL for conversations it never handled.
ALTER TABLE conversations ADD COLUMN first_agent_message_at timestamptz;

UPDATE messages AS m SET response_seconds = extract(epoch FROM m.created_at - p.previous_at)
  FROM (SELECT id, lag(role) OVER w AS previous_role, lag(created_at) OVER w AS previous_at
          FROM messages WINDOW w AS (PARTITION BY conversation_id ORDER BY created_at, id)) AS p
 WHERE m.id = p.id AND m.role = 'agent' AND p.previous_role = 'user';
UPDATE conversations AS c SET first_agent_message_at = f.at
  FROM (SELECT conversation_id, min(created_at) AS at FROM messages WHERE role = 'agent'
        GROUP BY conversation_id) AS f
 WHERE c.id = f.conversation_id;

CREATE INDEX messages_agent_created_idx ON messages (created_at)
    INCLUDE (conversation_id, response_seconds) WHERE role = 'agent';
CREATE INDEX lead_step_history_source_changed_idx ON lead_step_history (source, changed_at);
CREATE INDEX conversations_first_agent_idx ON conversations (first_agent_message_at)
    WHERE first_agent_message_at IS NOT NULL;

CREATE FUNCTION answer_delay() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous messages%ROWTYPE;
BEGIN
    IF NEW.role = 'agent' AND NEW.response_seconds IS NULL THEN
        SELECT * INTO previous FROM messages
         WHERE conversation_id = NEW.conversation_id AND created_at <= NEW.created_at
         ORDER BY created_at DESC, id DESC LIMIT 1;
        IF previous.role = 'user' THEN
            NEW.response_seconds := extract(epoch FROM NEW.created_at - previous.created_at);
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_answer_delay BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION answer_delay();

CREATE FUNCTION note_first_agent_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET first_agent_message_at = NEW.created_at
     WHERE id = NEW.conversation_id
       AND (first_agent_message_at IS NULL OR first_agent_message_at > NEW.created_at);
    RETURN NEW;
END $$;
CREATE TRIGGER messages_first_agent_message AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'agent') EXECUTE FUNCTION note_first_agent_message();

-- Row counts of tables too big to count on every dashboard refresh.
CREATE TABLE row_counts (
    table_name text PRIMARY KEY,
    n          bigint NOT NULL CHECK (n >= 0)
);
INSERT INTO row_counts VALUES ('users', (SELECT count(*) FROM users));

CREATE FUNCTION count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE row_counts SET n = n + (SELECT count(*) FROM inserted) WHERE table_name = TG_TABLE_NAME;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE row_counts SET n = n - (SELECT count(*) FROM deleted) WHERE table_name = TG_TABLE_NAME;
    ELSE  -- TRUNCATE
        UPDATE row_counts SET n = 0 WHERE table_name = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER users_count_insert AFTER INSERT ON users REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION count_rows();
CREATE TRIGGER users_count_delete AFTER DELETE ON users REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION count_rows();
CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION count_rows();

-- Recomputes every kept count (after a bulk load that ran with triggers off).
CREATE FUNCTION recount_all() RETURNS void LANGUAGE sql AS $$
    SELECT recount_lead_steps();
    UPDATE row_counts SET n = (SELECT count(*) FROM users) WHERE table_name = 'users';
$$;

-- Per step: leads there now, and leads that ever reached it (furthest step at or past it).
CREATE VIEW lead_step_reach AS
SELECT step, current, (sum(furthest) OVER (ORDER BY step DESC))::bigint AS reached
  FROM lead_step_counts;
