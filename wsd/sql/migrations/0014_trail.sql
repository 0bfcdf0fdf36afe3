-- Who did what: every write through wsd on a trail, every switch of the AI agent with who
-- made it and why, and what followed each hand-off kept on it so the take-over figures are a
-- few index ranges at any data size.

-- ---------------------------------------------------------------------------------------
-- The trail: one entry per committed write through wsd, written in the write's own
-- transaction (a rolled-back write leaves none), plus one per export.

CREATE TABLE trail_entries (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,              -- the token's name (the signed-in user, once there is one)
    actor_role text NOT NULL,
    resource   text NOT NULL,
    action     text NOT NULL,
    -- The lead the write touched, resolved from its ids when it was written. No foreign key:
    -- the trail outlives what it speaks of.
    lead_id    uuid,
    ids        jsonb NOT NULL,             -- {field: id} of every id the write named or made
    payload    jsonb NOT NULL,             -- the request's payload, personal fields masked
    outcome    text NOT NULL
);
CREATE INDEX trail_entries_at_idx ON trail_entries (at DESC, id DESC);
CREATE INDEX trail_entries_lead_idx ON trail_entries (lead_id, at DESC, id DESC) WHERE lead_id IS NOT NULL;
CREATE INDEX trail_entries_actor_idx ON trail_entries (actor, at DESC, id DESC);

-- The lead a write's ids point at: named directly, or through its meeting, requirements or
-- conversation (the conversation's newest lead). NULL when none does.
CREATE FUNCTION trail_lead(ids jsonb) RETURNS uuid LANGUAGE sql STABLE
    RETURN coalesce(
        (ids ->> 'lead_id')::uuid,
        (ids ->> 'lead_qualification_id')::uuid,
        (SELECT m.lead_id FROM meetings AS m WHERE m.id = (ids ->> 'meeting_id')::uuid),
        (SELECT r.lead_id FROM requirements AS r WHERE r.id = (ids ->> 'requirements_id')::uuid),
        (SELECT l.id FROM lead_qualifications AS l
          WHERE l.conversation_id = (ids ->> 'conversation_id')::uuid
          ORDER BY l.created_at DESC, l.id DESC LIMIT 1));

-- ---------------------------------------------------------------------------------------
-- The agent switch, explained. Every real switch of conversations.agent_enabled is recorded
-- by a trigger, whoever writes it. The writer names itself with settings of its transaction:
--     SET LOCAL wsd.actor = 'agent-worker-3';   -- default: 'agent'
--     SET LOCAL wsd.reason = 'customer asked for a person';   -- optional
-- wsd sets them (and wsd.actor_role) from the caller of update_agent_status.

CREATE FUNCTION agent_switch_setting(name text) RETURNS text LANGUAGE sql STABLE
    RETURN nullif(current_setting(name, true), '');

-- Who made a switch and why: what the writer says, else its transaction's settings (the
-- column defaults, so a bulk load with triggers off names its rows too).
ALTER TABLE agent_status_changes
    ADD COLUMN actor text NOT NULL DEFAULT 'agent',
    ADD COLUMN actor_role text,
    ADD COLUMN reason text CHECK (length(reason) <= 500),
    -- Kept for hand-offs (enabled = false): the conversation's next switch, and the first
    -- message by a human in the conversation from the hand-off until that switch.
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN answered_at timestamptz;
ALTER TABLE agent_status_changes
    ALTER COLUMN actor SET DEFAULT coalesce(agent_switch_setting('wsd.actor'), 'agent'),
    ALTER COLUMN actor_role SET DEFAULT agent_switch_setting('wsd.actor_role'),
    ALTER COLUMN reason SET DEFAULT agent_switch_setting('wsd.reason');

-- Before a hand-off is stored: a human message already there answers it (rows written out
-- of order).
CREATE FUNCTION answered_handoff() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.answered_at := (SELECT min(m.created_at) FROM messages AS m
                         WHERE m.conversation_id = NEW.conversation_id AND m.role = 'human'
                           AND m.created_at >= NEW.changed_at);
    RETURN NEW;
END $$;
CREATE TRIGGER agent_status_changes_answered BEFORE INSERT ON agent_status_changes
    FOR EACH ROW WHEN (NOT NEW.enabled AND NEW.answered_at IS NULL) EXECUTE FUNCTION answered_handoff();

-- After a switch: it ends the conversation's switch before it.
CREATE FUNCTION end_previous_agent_switch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_status_changes
       SET ended_at = NEW.changed_at,
           answered_at = CASE WHEN answered_at < NEW.changed_at THEN answered_at END
     WHERE conversation_id = NEW.conversation_id AND id <> NEW.id AND ended_at IS NULL
       AND changed_at <= NEW.changed_at;
    RETURN NULL;
END $$;
CREATE TRIGGER agent_status_changes_end_previous AFTER INSERT ON agent_status_changes
    FOR EACH ROW EXECUTE FUNCTION end_previous_agent_switch();

-- A real switch of the column, by wsd or straight by the agent's worker, is recorded.
CREATE FUNCTION record_agent_switch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agent_status_changes (conversation_id, enabled) VALUES (NEW.id, NEW.agent_enabled);
    RETURN NULL;
END $$;
CREATE TRIGGER conversations_agent_switch AFTER UPDATE OF agent_enabled ON conversations
    FOR EACH ROW WHEN (OLD.agent_enabled IS DISTINCT FROM NEW.agent_enabled)
    EXECUTE FUNCTION record_agent_switch();

-- A human's message answers the open hand-off of its conversation, if it is the first.
CREATE FUNCTION answer_handoff() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_status_changes
       SET answered_at = NEW.created_at
     WHERE conversation_id = NEW.conversation_id AND NOT enabled
       AND changed_at <= NEW.created_at AND (ended_at IS NULL OR ended_at > NEW.created_at)
       AND (answered_at IS NULL OR answered_at > NEW.created_at);
    RETURN NULL;
END $$;
CREATE TRIGGER messages_answer_handoff AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'human') EXECUTE FUNCTION answer_handoff();

-- Recomputes ended_at and answered_at of every switch (after a bulk load with triggers off).
CREATE FUNCTION recount_handoffs() RETURNS void LANGUAGE sql AS $$
    UPDATE agent_status_changes AS a SET ended_at = n.ended_at
      FROM (SELECT id, lead(changed_at) OVER (PARTITION BY conversation_id ORDER BY changed_at, id)
                       AS ended_at
              FROM agent_status_changes) AS n
     WHERE a.id = n.id AND a.ended_at IS DISTINCT FROM n.ended_at;
    UPDATE agent_status_changes AS a
       SET answered_at = (SELECT min(m.created_at) FROM messages AS m
                           WHERE m.conversation_id = a.conversation_id AND m.role = 'human'
                             AND m.created_at >= a.changed_at
                             AND (a.ended_at IS NULL OR m.created_at < a.ended_at))
     WHERE NOT a.enabled;
$$;
SELECT recount_handoffs();

CREATE OR REPLACE FUNCTION recount_all() RETURNS void LANGUAGE sql AS $$
    SELECT recount_lead_steps();
    UPDATE row_counts SET n = (SELECT count(*) FROM users) WHERE table_name = 'users';
    SELECT recount_kept_aggregates();
    SELECT recount_handoffs();
$$;

-- The take-over figures' ranges: hand-offs by time, and humans' messages by time.
CREATE INDEX agent_status_changes_handoffs_idx ON agent_status_changes (changed_at)
    INCLUDE (conversation_id, answered_at, ended_at) WHERE NOT enabled;
CREATE INDEX agent_status_changes_history_idx ON agent_status_changes (conversation_id, changed_at, id);
CREATE INDEX messages_human_created_idx ON messages (created_at) INCLUDE (conversation_id)
    WHERE role = 'human';

-- ---------------------------------------------------------------------------------------
-- Exports: CSV lines built by PostgreSQL, so wsd only forwards text (wsd/export.py).

-- One CSV cell (RFC 4180): NULL is empty; text beginning with =, +, -, @, tab or carriage
-- return gets a leading ' (OWASP's CSV-injection advice); quoted when it holds a comma, a
-- quote, CR or LF, quotes doubled.
CREATE FUNCTION csv_cell(value text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT CASE WHEN v ~ '[",\r\n]' THEN '"' || replace(v, '"', '""') || '"' ELSE v END
              FROM (SELECT CASE WHEN left(value, 1) IN ('=', '+', '-', '@', E'\t', E'\r')
                                THEN '''' || value ELSE coalesce(value, '') END) AS n(v));

-- A JSON document as one CSV line ending in CRLF: per column, a dotted path into it
-- (`user.email`); a scalar as its JSON text without quotes (true, 12, a string), an object
-- or array as its JSON text, a missing or null value as an empty cell.
CREATE FUNCTION csv_line(document json, columns text[]) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (SELECT string_agg(csv_cell(document #>> string_to_array(c.path, '.')), ',' ORDER BY c.n)
              FROM unnest(columns) WITH ORDINALITY AS c(path, n)) || E'\r\n';
