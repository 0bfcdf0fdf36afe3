-- The lead-qualification schema wsd serves: people, their conversations with the AI agent,
-- the qualification of each lead through the 7 steps, requirements and meetings.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TYPE lead_step AS ENUM
    ('start', 'consent', 'personal_data', 'bant', 'requirements', 'meeting', 'completed');

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    full_name   text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    email       text CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 320),
    phone       text CHECK (length(phone) <= 40),
    company     text CHECK (length(company) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What a lead search matches: name, email and company, one lower-cased string.
CREATE FUNCTION user_search_text(full_name text, email text, company text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(full_name || ' ' || coalesce(email, '') || ' ' || coalesce(company, ''));
CREATE INDEX users_search_trgm_idx ON users
    USING gin (user_search_text(full_name, email, company) gin_trgm_ops);

-- A LIKE pattern matching `needle` anywhere, with its own % and _ taken literally.
CREATE FUNCTION contains_pattern(needle text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN '%' || replace(replace(replace(lower(needle), '\', '\\'), '%', '\%'), '_', '\_') || '%';

CREATE TABLE conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_enabled   boolean NOT NULL DEFAULT true,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_message_at timestamptz
);
CREATE INDEX conversations_user_id_idx ON conversations (user_id);
CREATE INDEX conversations_open_last_message_idx ON conversations (last_message_at)
    WHERE status <> 'closed';

CREATE TABLE messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('user', 'agent', 'human')),
    content         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_conversation_created_idx ON messages (conversation_id, created_at);
CREATE INDEX messages_created_at_idx ON messages (created_at);


-- Every switch of the agent in a conversation; handoffs are the switches to false.
CREATE TABLE agent_status_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    enabled         boolean NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_status_changes_changed_at_idx ON agent_status_changes (changed_at);
CREATE INDEX agent_status_changes_conversation_idx ON agent_status_changes (conversation_id);

CREATE TABLE lead_qualifications (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id uuid REFERENCES conversations (id) ON DELETE SET NULL,
    current_step    lead_step NOT NULL DEFAULT 'start',
    consent         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    -- Kept by triggers: the furthest step ever entered (a manual move back keeps it), and
    -- the latest of step change, lead update and message in the lead's conversation.
    furthest_step   lead_step NOT NULL DEFAULT 'start',
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((current_step = 'completed') = (completed_at IS NOT NULL)),
    CHECK (furthest_step >= current_step)
);
CREATE INDEX lead_qualifications_created_idx ON lead_qualifications (created_at DESC, id DESC);
CREATE INDEX lead_qualifications_step_created_idx
    ON lead_qualifications (current_step, created_at DESC, id DESC);
CREATE INDEX lead_qualifications_step_updated_idx
    ON lead_qualifications (current_step, updated_at DESC, id DESC);
CREATE INDEX lead_qualifications_furthest_idx ON lead_qualifications (furthest_step);
CREATE INDEX lead_qualifications_open_activity_idx ON lead_qualifications (last_activity_at, id)
    WHERE completed_at IS NULL;
CREATE INDEX lead_qualifications_user_idx ON lead_qualifications (user_id);
CREATE INDEX lead_qualifications_conversation_idx ON lead_qualifications (conversation_id);

CREATE TABLE lead_step_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id     uuid NOT NULL REFERENCES lead_qualifications (id) ON DELETE CASCADE,
    from_step   lead_step,
    to_step     lead_step NOT NULL,
    source      text NOT NULL CHECK (source IN ('agent', 'manual', 'meeting')),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (from_step IS DISTINCT FROM to_step)
);
CREATE INDEX lead_step_history_lead_idx ON lead_step_history (lead_id, changed_at, id);
CREATE INDEX lead_step_history_changed_at_idx ON lead_step_history (changed_at);

-- When each lead first entered each step: what conversion times are measured between.
CREATE TABLE lead_step_entries (
    lead_id     uuid NOT NULL REFERENCES lead_qualifications (id) ON DELETE CASCADE,
    step        lead_step NOT NULL,
    entered_at  timestamptz NOT NULL,
    PRIMARY KEY (lead_id, step)
);
CREATE INDEX lead_step_entries_step_idx ON lead_step_entries (step, lead_id) INCLUDE (entered_at);

CREATE FUNCTION record_step_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_step_entries (lead_id, step, entered_at)
    VALUES (NEW.lead_id, NEW.to_step, NEW.changed_at)
    ON CONFLICT (lead_id, step) DO NOTHING;
    UPDATE lead_qualifications
       SET furthest_step = greatest(furthest_step, NEW.to_step),
           last_activity_at = greatest(last_activity_at, NEW.changed_at)
     WHERE id = NEW.lead_id;
    RETURN NEW;
END $$;
CREATE TRIGGER lead_step_history_record AFTER INSERT ON lead_step_history
    FOR EACH ROW EXECUTE FUNCTION record_step_change();

CREATE FUNCTION touch_lead_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.last_activity_at := greatest(NEW.last_activity_at, NEW.updated_at);
    RETURN NEW;
END $$;
CREATE TRIGGER lead_qualifications_activity BEFORE INSERT OR UPDATE ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION touch_lead_activity();

-- Keeps conversations.last_message_at and the lead's last activity right whoever writes
-- messages (the agent worker does).
CREATE FUNCTION touch_conversation_last_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations
       SET last_message_at = greatest(coalesce(last_message_at, NEW.created_at), NEW.created_at)
     WHERE id = NEW.conversation_id;
    UPDATE lead_qualifications
       SET last_activity_at = greatest(last_activity_at, NEW.created_at)
     WHERE conversation_id = NEW.conversation_id AND last_activity_at < NEW.created_at;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION touch_conversation_last_message();

CREATE TABLE bant_data (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    lead_id     uuid NOT NULL UNIQUE REFERENCES lead_qualifications (id) ON DELETE CASCADE,
    budget      text CHECK (length(budget) <= 100),
    authority   text CHECK (length(authority) <= 100),
    need        text CHECK (length(need) <= 100),
    timeline    text CHECK (length(timeline) <= 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE requirements (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    lead_id     uuid NOT NULL UNIQUE REFERENCES lead_qualifications (id) ON DELETE CASCADE,
    app_type    text NOT NULL CHECK (length(app_type) BETWEEN 1 AND 50),
    deadline    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Names are unique per requirement once trimmed, case-folded and inner spaces collapsed.
CREATE FUNCTION normalized_name(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(regexp_replace(btrim(name), '\s+', ' ', 'g'));

CREATE TABLE features (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    requirements_id uuid NOT NULL REFERENCES requirements (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX features_requirement_name_key ON features (requirements_id, normalized_name(name));
CREATE INDEX features_normalized_name_idx ON features (normalized_name(name)) INCLUDE (name);

CREATE TABLE integrations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    requirements_id uuid NOT NULL REFERENCES requirements (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX integrations_requirement_name_key
    ON integrations (requirements_id, normalized_name(name));
CREATE INDEX integrations_normalized_name_idx ON integrations (normalized_name(name)) INCLUDE (name);

CREATE TABLE meetings (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    lead_id          uuid NOT NULL REFERENCES lead_qualifications (id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    subject          text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    start_time       timestamptz NOT NULL,
    end_time         timestamptz NOT NULL,
    attendee_email   text NOT NULL CHECK (attendee_email ~ '^[^@\s]+@[^@\s]+$'),
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'cancelled', 'completed')),
    outlook_event_id text,
    sync_status      text NOT NULL DEFAULT 'disabled'
                     CHECK (sync_status IN ('synced', 'pending', 'failed', 'disabled')),
    sync_attempts    integer NOT NULL DEFAULT 0,
    last_error       text,
    last_synced_at   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);
CREATE INDEX meetings_start_time_idx ON meetings (start_time);
CREATE INDEX meetings_lead_idx ON meetings (lead_id, start_time);
CREATE INDEX meetings_user_idx ON meetings (user_id);
CREATE INDEX meetings_created_at_idx ON meetings (created_at);
CREATE INDEX meetings_unsynced_idx ON meetings (sync_status) WHERE sync_status IN ('pending', 'failed');

-- The JSON documents the dashboard receives, defined once for every query that returns them.

-- A lead as the leads list shows it: the seed's shape (user, bant_data, requirements).
CREATE FUNCTION lead_document(l lead_qualifications, u users, b bant_data, r requirements)
    RETURNS json LANGUAGE sql STABLE
    RETURN json_build_object(
        'id', l.id, 'user_id', l.user_id, 'conversation_id', l.conversation_id,
        'current_step', l.current_step, 'consent', l.consent, 'created_at', l.created_at,
        'updated_at', l.updated_at, 'completed_at', l.completed_at,
        'user', json_build_object('full_name', u.full_name, 'email', u.email,
                                  'phone', u.phone, 'company', u.company),
        'bant_data', CASE WHEN b.id IS NOT NULL THEN json_build_object(
            'budget', b.budget, 'authority', b.authority, 'need', b.need, 'timeline', b.timeline) END,
        'requirements', CASE WHEN r.id IS NOT NULL THEN json_build_object(
            'id', r.id, 'app_type', r.app_type, 'deadline', r.deadline) END);

-- A requirement with its features and integrations, each {id, name, description} in
-- the order they were added.
CREATE FUNCTION requirements_document(r requirements) RETURNS json LANGUAGE sql STABLE
    RETURN json_build_object(
        'id', r.id, 'lead_id', r.lead_id, 'app_type', r.app_type, 'deadline', r.deadline,
        'created_at', r.created_at, 'updated_at', r.updated_at,
        'features', coalesce((
            SELECT json_agg(json_build_object('id', f.id, 'name', f.name, 'description', f.description)
                            ORDER BY f.created_at, f.id)
              FROM features f WHERE f.requirements_id = r.id), '[]'::json),
        'integrations', coalesce((
            SELECT json_agg(json_build_object('id', i.id, 'name', i.name, 'description', i.description)
                            ORDER BY i.created_at, i.id)
              FROM integrations i WHERE i.requirements_id = r.id), '[]'::json));
