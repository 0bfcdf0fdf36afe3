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

-- A real switch of the column, by wsd or straight by the agent's worker, is recorded.
CREATE FUNCTION record_agent_switch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agent_status_changes (conversation_id, enabled) VALUES (NEW.id, NEW.agent_enabled);
    RETURN NULL;
END $$;
CREATE TRIGGER conversations_agent_switch AFTER UPDATE OF agent_enabled ON conversations
    FOR EACH ROW WHEN (OLD.agent_enabled IS DISTINCT FROM NEW.agent_enabled)
    EXECUTE FUNCTION record_agent_switch();

-- What ended_at and answered_at should be for the switches of one conversation (or all, with
-- NULL), from the raw rows alone: the next switch, and for a hand-off the first human message
-- from it until that next switch.
CREATE FUNCTION recomputed_handoffs(conversation uuid DEFAULT NULL)
    RETURNS TABLE (id bigint, ended_at timestamptz, answered_at timestamptz) LANGUAGE sql STABLE AS $$
    SELECT a.id, a.next_at,
           CASE WHEN NOT a.enabled THEN (
               SELECT min(m.created_at) FROM messages AS m
                WHERE m.conversation_id = a.conversation_id AND m.role = 'human'
                  AND m.created_at >= a.changed_at AND (a.next_at IS NULL OR m.created_at < a.next_at)) END
      FROM (SELECT s.id, s.conversation_id, s.enabled, s.changed_at,
                   lead(s.changed_at) OVER (PARTITION BY s.conversation_id ORDER BY s.changed_at, s.id) AS next_at
              FROM agent_status_changes AS s
             WHERE conversation IS NULL OR s.conversation_id = conversation) AS a;
$$;

-- Brings one conversation's kept columns in line. The conversation's row lock (which every
-- message and every switch through wsd takes anyway) orders concurrent writers of the same
-- conversation, and each statement after it sees what the one before committed, so rows
-- written in any order, by several writers at once, still end up exact.
CREATE FUNCTION rekeep_handoffs(conversation uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM conversations WHERE id = conversation FOR NO KEY UPDATE;
    UPDATE agent_status_changes AS a SET ended_at = r.ended_at, answered_at = r.answered_at
      FROM recomputed_handoffs(conversation) AS r
     WHERE a.id = r.id AND (a.ended_at, a.answered_at) IS DISTINCT FROM (r.ended_at, r.answered_at);
END $$;

-- A switch written, moved or deleted, or a human's message written, moved or deleted:
-- its conversation's (and, when it moved, its old conversation's) hand-offs kept again.
CREATE FUNCTION keep_handoffs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM rekeep_handoffs(OLD.conversation_id);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.conversation_id IS DISTINCT FROM OLD.conversation_id) THEN
        PERFORM rekeep_handoffs(NEW.conversation_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER agent_status_changes_keep_handoffs
    AFTER INSERT OR DELETE OR UPDATE OF conversation_id, enabled, changed_at ON agent_status_changes
    FOR EACH ROW EXECUTE FUNCTION keep_handoffs();
CREATE TRIGGER messages_keep_handoffs AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'human') EXECUTE FUNCTION keep_handoffs();
CREATE TRIGGER messages_keep_handoffs_delete AFTER DELETE ON messages
    FOR EACH ROW WHEN (OLD.role = 'human') EXECUTE FUNCTION keep_handoffs();
CREATE TRIGGER messages_keep_handoffs_update AFTER UPDATE OF conversation_id, role, created_at ON messages
    FOR EACH ROW WHEN (OLD.role = 'human' OR NEW.role = 'human') EXECUTE FUNCTION keep_handoffs();

-- Recomputes them all (after a bulk load with triggers off); `wsd verify-aggregates` compares.
CREATE FUNCTION recount_handoffs() RETURNS void LANGUAGE sql AS $$
    UPDATE agent_status_changes AS a SET ended_at = r.ended_at, answered_at = r.answered_at
      FROM recomputed_handoffs() AS r
     WHERE a.id = r.id AND (a.ended_at, a.answered_at) IS DISTINCT FROM (r.ended_at, r.answered_at);
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
-- Exports (wsd/export.py): PostgreSQL's COPY writes the CSV; this makes a cell that a
-- spreadsheet would run as a formula (beginning with =, +, -, @, tab or carriage return)
-- start with ' instead (OWASP's CSV-injection advice). NULL stays NULL (an empty cell).
CREATE FUNCTION csv_safe(value text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN left(value, 1) IN ('=', '+', '-', '@', E'\t', E'\r') THEN '''' || value ELSE value END;
