-- The expensive dashboard figures kept as they change, in the transaction of the write that
-- changes them, so that every read is a few index ranges at any data size (and cheap enough
-- to re-run on every change):
--   * conversion stats: each lead's hours between entering a step and the step before it,
--     stored once on its lead_step_entries row, and per step a count of those per whole hour
--     (step_interval_counts) so the exact median is one short index range;
--   * popular features/integrations: per kind, folded name and spelling, its count
--     (requirement_item_names), and the count of requirements (row_counts);
--   * activity timeline and agent performance: per UTC quarter-hour and kind of event, its
--     count (and for agent replies the sum of their delays) (activity_counts).
--
-- Writers never wait on one another for these tables beyond the one count row they change:
-- each trigger changes its count rows with one INSERT ... ON CONFLICT whose rows are sorted
-- by key, so two writers lock shared count rows in the same order (no deadlock between
-- them), and writers of different kinds of figure touch different rows. Rows at zero are
-- kept (readers skip them): deleting them would race with a concurrent insert.
-- `recount_kept_aggregates()` rebuilds them from the raw tables (bulk loads with triggers
-- off, TRUNCATE); `wsd verify-aggregates` compares them with that recomputation.

-- ---------------------------------------------------------------------------------------
-- Conversion stats: hours from entering the previous step to entering this one.

-- Hours from `earlier` to `later`: the seconds as float8, then / 3600 (the demo generator
-- computes the same in Python, bit for bit).
CREATE FUNCTION step_hours(later timestamptz, earlier timestamptz) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN extract(epoch FROM later - earlier)::float8 / 3600;

CREATE FUNCTION previous_step(step lead_step) RETURNS lead_step LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT max(s) FROM unnest(enum_range(NULL::lead_step)) AS s WHERE s < step);
CREATE FUNCTION next_step(step lead_step) RETURNS lead_step LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT min(s) FROM unnest(enum_range(NULL::lead_step)) AS s WHERE s > step);

-- NULL when the lead has no entry for the previous step (and always for `start`).
ALTER TABLE lead_step_entries ADD COLUMN hours_from_previous double precision;

-- Per step and whole hour (floor of hours_from_previous), how many leads took that long.
CREATE TABLE step_interval_counts (
    step        lead_step NOT NULL,
    hour_bucket bigint NOT NULL,
    leads       bigint NOT NULL,
    PRIMARY KEY (step, hour_bucket)
);

-- What hours_from_previous should be for every entry, from the entry times alone.
CREATE FUNCTION recomputed_step_hours() RETURNS TABLE (lead_id uuid, step lead_step, hours double precision)
    LANGUAGE sql STABLE AS $$
    WITH ordinals AS (
        SELECT s AS step, row_number() OVER () AS n FROM unnest(enum_range(NULL::lead_step)) AS s
    ), entries AS (
        SELECT e.lead_id, e.step, e.entered_at, o.n,
               lag(e.entered_at) OVER w AS previous_at, lag(o.n) OVER w AS previous_n
          FROM lead_step_entries AS e JOIN ordinals AS o USING (step)
        WINDOW w AS (PARTITION BY e.lead_id ORDER BY e.step)
    )
    SELECT lead_id, step,
           CASE WHEN previous_n = n - 1 THEN step_hours(entered_at, previous_at) END
      FROM entries;
$$;

-- The backfill of the column, before its triggers exist.
UPDATE lead_step_entries AS e SET hours_from_previous = r.hours
  FROM recomputed_step_hours() AS r
 WHERE e.lead_id = r.lead_id AND e.step = r.step AND r.hours IS NOT NULL;

CREATE FUNCTION recomputed_step_interval_counts()
    RETURNS TABLE (step lead_step, hour_bucket bigint, leads bigint) LANGUAGE sql STABLE AS $$
    SELECT step, floor(hours_from_previous)::bigint, count(*)
      FROM lead_step_entries WHERE hours_from_previous IS NOT NULL
     GROUP BY 1, 2;
$$;


-- Before an entry is written: its hours from the lead's entry for the previous step.
CREATE FUNCTION step_entry_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.hours_from_previous := (
        SELECT step_hours(NEW.entered_at, p.entered_at) FROM lead_step_entries AS p
         WHERE p.lead_id = NEW.lead_id AND p.step = previous_step(NEW.step));
    RETURN NEW;
END $$;
CREATE TRIGGER lead_step_entries_hours BEFORE INSERT OR UPDATE OF lead_id, step, entered_at
    ON lead_step_entries FOR EACH ROW EXECUTE FUNCTION step_entry_hours();

-- After an entry changes: its interval counted (the old one uncounted), and the entry of the
-- next step, whose interval is measured from this one, brought in line.
CREATE FUNCTION keep_step_intervals() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moved boolean := TG_OP <> 'UPDATE'
        OR (OLD.lead_id, OLD.step, OLD.entered_at) IS DISTINCT FROM (NEW.lead_id, NEW.step, NEW.entered_at);
BEGIN
    INSERT INTO step_interval_counts AS c (step, hour_bucket, leads)
    SELECT d.step, floor(d.hours)::bigint, sum(d.delta)
      FROM (SELECT OLD.step, OLD.hours_from_previous, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.step, NEW.hours_from_previous, 1 WHERE TG_OP <> 'DELETE') AS d(step, hours, delta)
     WHERE d.hours IS NOT NULL
     GROUP BY 1, 2
    HAVING sum(d.delta) <> 0
    ORDER BY 1, 2
    ON CONFLICT (step, hour_bucket) DO UPDATE SET leads = c.leads + EXCLUDED.leads;
    IF moved THEN
        -- Rows of both images: a deleted or moved entry leaves its old next step without one.
        UPDATE lead_step_entries AS e
           SET hours_from_previous = (
                   SELECT step_hours(e.entered_at, p.entered_at) FROM lead_step_entries AS p
                    WHERE p.lead_id = e.lead_id AND p.step = previous_step(e.step))
         WHERE (TG_OP <> 'INSERT' AND e.lead_id = OLD.lead_id AND e.step = next_step(OLD.step))
            OR (TG_OP <> 'DELETE' AND e.lead_id = NEW.lead_id AND e.step = next_step(NEW.step));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER lead_step_entries_intervals AFTER INSERT OR DELETE OR UPDATE ON lead_step_entries
    FOR EACH ROW EXECUTE FUNCTION keep_step_intervals();

-- The exact median's index: per step, the intervals in order.
CREATE INDEX lead_step_entries_hours_idx ON lead_step_entries (step, hours_from_previous)
    WHERE hours_from_previous IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- Popular features and integrations.

CREATE TABLE requirement_item_names (
    kind       text NOT NULL CHECK (kind IN ('features', 'integrations')),
    normalized text NOT NULL,
    name       text NOT NULL,
    items      bigint NOT NULL,
    PRIMARY KEY (kind, normalized, name)
);

CREATE FUNCTION recomputed_requirement_item_names()
    RETURNS TABLE (kind text, normalized text, name text, items bigint) LANGUAGE sql STABLE AS $$
    SELECT kind, normalized_name(name), name, count(*) FROM requirement_items GROUP BY 1, 2, 3;
$$;

CREATE FUNCTION keep_requirement_item_names() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO requirement_item_names AS c (kind, normalized, name, items)
    SELECT TG_TABLE_NAME, normalized_name(d.name), d.name, sum(d.delta)
      FROM (SELECT OLD.name, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.name, 1 WHERE TG_OP <> 'DELETE') AS d(name, delta)
     GROUP BY d.name
    HAVING sum(d.delta) <> 0
    ORDER BY d.name
    ON CONFLICT (kind, normalized, name) DO UPDATE SET items = c.items + EXCLUDED.items;
    RETURN NULL;
END $$;

CREATE TRIGGER features_names AFTER INSERT OR DELETE OR UPDATE OF name ON features
    FOR EACH ROW EXECUTE FUNCTION keep_requirement_item_names();
CREATE TRIGGER integrations_names AFTER INSERT OR DELETE OR UPDATE OF name ON integrations
    FOR EACH ROW EXECUTE FUNCTION keep_requirement_item_names();

-- The share's divisor: requirements, counted like users.
INSERT INTO row_counts VALUES ('requirements', 0);
CREATE TRIGGER requirements_count_insert AFTER INSERT ON requirements REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION count_rows();
CREATE TRIGGER requirements_count_delete AFTER DELETE ON requirements REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION count_rows();
CREATE TRIGGER requirements_count_truncate AFTER TRUNCATE ON requirements
    FOR EACH STATEMENT EXECUTE FUNCTION count_rows();

-- ---------------------------------------------------------------------------------------
-- Activity timeline and agent performance: events per UTC quarter-hour. Quarter-hours,
-- because every time zone in use today is a whole number of quarter-hours from UTC, so the
-- local hours the timeline shows are sums of whole quarters.

CREATE TABLE activity_counts (
    quarter timestamptz NOT NULL,
    kind    text NOT NULL,
    events  bigint NOT NULL,
    -- For `agent_replies`: the sum of their response_seconds (as numeric, so it is exact
    -- whatever the order of the additions); 0 for other kinds.
    total   numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, quarter)
);

CREATE FUNCTION activity_quarter(at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('15 minutes', at, timestamptz '2000-01-01 00:00:00+00');

-- The events each row is, with when they happened: the definitions of the counted figures.
CREATE FUNCTION activity_of(l lead_qualifications) RETURNS TABLE (kind text, at timestamptz, total numeric)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT v.kind, l.created_at, 0::numeric
      FROM (VALUES ('new_leads', true), ('handled_leads', l.agent_handled),
                   ('handled_completed', l.agent_handled AND l.completed_at IS NOT NULL)) AS v(kind, counted)
     WHERE v.counted AND l.created_at IS NOT NULL;
$$;
CREATE FUNCTION activity_of(m messages) RETURNS TABLE (kind text, at timestamptz, total numeric)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT v.kind, m.created_at, v.total
      FROM (VALUES ('messages', true, 0::numeric), ('agent_messages', m.role = 'agent', 0),
                   ('agent_replies', m.role = 'agent' AND m.response_seconds IS NOT NULL,
                    m.response_seconds::numeric)) AS v(kind, counted, total)
     WHERE v.counted AND m.created_at IS NOT NULL;
$$;
CREATE FUNCTION activity_of(h lead_step_history) RETURNS TABLE (kind text, at timestamptz, total numeric)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT v.kind, h.changed_at, 0::numeric
      FROM (VALUES ('step_changes', h.from_step IS NOT NULL),
                   ('leads_advanced', h.source = 'agent' AND h.to_step > h.from_step)) AS v(kind, counted)
     WHERE v.counted AND h.changed_at IS NOT NULL;
$$;
CREATE FUNCTION activity_of(m meetings) RETURNS TABLE (kind text, at timestamptz, total numeric)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT v.kind, m.created_at, 0::numeric
      FROM (VALUES ('meetings_created', true), ('meetings_booked', m.lead_agent_handled)) AS v(kind, counted)
     WHERE v.counted AND m.created_at IS NOT NULL;
$$;
CREATE FUNCTION activity_of(a agent_status_changes) RETURNS TABLE (kind text, at timestamptz, total numeric)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT v.kind, a.changed_at, 0::numeric
      FROM (VALUES ('agent_toggles', true), ('handoffs', NOT a.enabled)) AS v(kind, counted)
     WHERE v.counted AND a.changed_at IS NOT NULL;
$$;
CREATE FUNCTION activity_of(c conversations) RETURNS TABLE (kind text, at timestamptz, total numeric)
    LANGUAGE sql IMMUTABLE AS $$
    SELECT 'conversations_handled', c.first_agent_message_at, 0::numeric
     WHERE c.first_agent_message_at IS NOT NULL;
$$;

CREATE FUNCTION recomputed_activity_counts()
    RETURNS TABLE (quarter timestamptz, kind text, events bigint, total numeric) LANGUAGE sql STABLE AS $$
    SELECT activity_quarter(a.at), a.kind, count(*), sum(a.total)
      FROM (SELECT e.* FROM lead_qualifications AS r, activity_of(r) AS e
            UNION ALL SELECT e.* FROM messages AS r, activity_of(r) AS e
            UNION ALL SELECT e.* FROM lead_step_history AS r, activity_of(r) AS e
            UNION ALL SELECT e.* FROM meetings AS r, activity_of(r) AS e
            UNION ALL SELECT e.* FROM agent_status_changes AS r, activity_of(r) AS e
            UNION ALL SELECT e.* FROM conversations AS r, activity_of(r) AS e) AS a
     GROUP BY 1, 2;
$$;

-- One trigger function for every source table: the old row's events out, the new row's in.
CREATE FUNCTION keep_activity_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activity_counts AS c (quarter, kind, events, total)
    SELECT activity_quarter(d.at), d.kind, sum(d.sign), sum(d.sign * d.total)
      FROM (SELECT o.*, -1 AS sign FROM activity_of(OLD) AS o WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT n.*, 1 FROM activity_of(NEW) AS n WHERE TG_OP <> 'DELETE') AS d
     GROUP BY 1, 2
    HAVING sum(d.sign) <> 0 OR sum(d.sign * d.total) <> 0
    ORDER BY 2, 1
    ON CONFLICT (kind, quarter) DO UPDATE
       SET events = c.events + EXCLUDED.events, total = c.total + EXCLUDED.total;
    RETURN NULL;
END $$;

CREATE TRIGGER lead_qualifications_activity_counts AFTER INSERT OR DELETE ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER lead_qualifications_activity_counts_update AFTER UPDATE ON lead_qualifications
    FOR EACH ROW WHEN ((OLD.created_at, OLD.agent_handled, OLD.completed_at IS NULL)
                       IS DISTINCT FROM (NEW.created_at, NEW.agent_handled, NEW.completed_at IS NULL))
    EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER messages_activity_counts AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER messages_activity_counts_update AFTER UPDATE ON messages
    FOR EACH ROW WHEN ((OLD.created_at, OLD.role, OLD.response_seconds)
                       IS DISTINCT FROM (NEW.created_at, NEW.role, NEW.response_seconds))
    EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER lead_step_history_activity_counts AFTER INSERT OR DELETE ON lead_step_history
    FOR EACH ROW EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER lead_step_history_activity_counts_update AFTER UPDATE ON lead_step_history
    FOR EACH ROW WHEN ((OLD.changed_at, OLD.from_step, OLD.to_step, OLD.source)
                       IS DISTINCT FROM (NEW.changed_at, NEW.from_step, NEW.to_step, NEW.source))
    EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER meetings_activity_counts AFTER INSERT OR DELETE ON meetings
    FOR EACH ROW EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER meetings_activity_counts_update AFTER UPDATE ON meetings
    FOR EACH ROW WHEN ((OLD.created_at, OLD.lead_agent_handled)
                       IS DISTINCT FROM (NEW.created_at, NEW.lead_agent_handled))
    EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER agent_status_changes_activity_counts AFTER INSERT OR DELETE ON agent_status_changes
    FOR EACH ROW EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER agent_status_changes_activity_counts_update AFTER UPDATE ON agent_status_changes
    FOR EACH ROW WHEN ((OLD.changed_at, OLD.enabled) IS DISTINCT FROM (NEW.changed_at, NEW.enabled))
    EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER conversations_activity_counts AFTER INSERT OR DELETE ON conversations
    FOR EACH ROW EXECUTE FUNCTION keep_activity_counts();
CREATE TRIGGER conversations_activity_counts_update AFTER UPDATE ON conversations
    FOR EACH ROW WHEN (OLD.first_agent_message_at IS DISTINCT FROM NEW.first_agent_message_at)
    EXECUTE FUNCTION keep_activity_counts();

-- The same events counted straight from the raw rows in [since, until): for the partial
-- quarter-hours at the ends of a window that does not start or end on a quarter.
CREATE FUNCTION activity_between(since timestamptz, until timestamptz)
    RETURNS TABLE (kind text, events bigint, total numeric) LANGUAGE sql STABLE AS $$
    SELECT a.kind, count(*), sum(a.total)
      FROM (SELECT e.* FROM lead_qualifications AS r, activity_of(r) AS e
             WHERE r.created_at >= since AND r.created_at < until
            UNION ALL SELECT e.* FROM messages AS r, activity_of(r) AS e
             WHERE r.created_at >= since AND r.created_at < until
            UNION ALL SELECT e.* FROM lead_step_history AS r, activity_of(r) AS e
             WHERE r.changed_at >= since AND r.changed_at < until
            UNION ALL SELECT e.* FROM meetings AS r, activity_of(r) AS e
             WHERE r.created_at >= since AND r.created_at < until
            UNION ALL SELECT e.* FROM agent_status_changes AS r, activity_of(r) AS e
             WHERE r.changed_at >= since AND r.changed_at < until
            UNION ALL SELECT e.* FROM conversations AS r, activity_of(r) AS e
             WHERE r.first_agent_message_at >= since AND r.first_agent_message_at < until) AS a
     GROUP BY a.kind;
$$;

-- Every kind's events in [since, until) for any bounds: whole quarters from activity_counts,
-- the partial quarters at the ends from the raw rows.
CREATE FUNCTION activity_in(since timestamptz, until timestamptz)
    RETURNS TABLE (kind text, events bigint, total numeric) LANGUAGE sql STABLE AS $$
    WITH whole AS (  -- [first, last): the whole quarters inside the window (may be empty)
        SELECT first, greatest(activity_quarter(until), first) AS last
          FROM (SELECT least(CASE WHEN activity_quarter(since) = since THEN since
                                  ELSE activity_quarter(since) + interval '15 minutes' END,
                             until) AS first) AS f
    )
    SELECT p.kind, sum(p.events)::bigint, sum(p.total)
      FROM (SELECT c.kind, c.events, c.total FROM activity_counts AS c, whole AS w
             WHERE c.quarter >= w.first AND c.quarter < w.last
            UNION ALL
            SELECT e.* FROM whole AS w, activity_between(since, w.first) AS e
            UNION ALL
            SELECT e.* FROM whole AS w, activity_between(w.last, until) AS e) AS p
     GROUP BY p.kind;
$$;

-- ---------------------------------------------------------------------------------------
-- Rebuilding and the bulk-load contract.

-- Rebuilds every table above from the raw rows. hours_from_previous is only rewritten where
-- it is wrong, so a loader that filled it (the demo seeder) costs a read, not a rewrite.
CREATE FUNCTION recount_kept_aggregates() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Writers' triggers wait until this rebuild commits, then add their rows' counts to it
    -- (the rebuild did not see their rows, still uncommitted).
    LOCK TABLE step_interval_counts, requirement_item_names, activity_counts IN EXCLUSIVE MODE;
    UPDATE lead_step_entries AS e SET hours_from_previous = r.hours
      FROM recomputed_step_hours() AS r
     WHERE e.lead_id = r.lead_id AND e.step = r.step AND e.hours_from_previous IS DISTINCT FROM r.hours;
    DELETE FROM step_interval_counts;
    INSERT INTO step_interval_counts SELECT * FROM recomputed_step_interval_counts();
    DELETE FROM requirement_item_names;
    INSERT INTO requirement_item_names SELECT * FROM recomputed_requirement_item_names();
    UPDATE row_counts SET n = (SELECT count(*) FROM requirements) WHERE table_name = 'requirements';
    DELETE FROM activity_counts;
    INSERT INTO activity_counts SELECT * FROM recomputed_activity_counts();
END $$;

CREATE OR REPLACE FUNCTION recount_all() RETURNS void LANGUAGE sql AS $$
    SELECT recount_lead_steps();
    UPDATE row_counts SET n = (SELECT count(*) FROM users) WHERE table_name = 'users';
    SELECT recount_kept_aggregates();
$$;

CREATE FUNCTION recount_kept_aggregates_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM recount_kept_aggregates();
    RETURN NULL;
END $$;
-- A TRUNCATE of any source table rebuilds them all from what is left.
DO $$
DECLARE
    source text;
BEGIN
    FOREACH source IN ARRAY ARRAY['lead_step_entries', 'features', 'integrations', 'lead_qualifications',
                                  'messages', 'lead_step_history', 'meetings', 'agent_status_changes',
                                  'conversations'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION recount_kept_aggregates_trigger()', source || '_kept_truncate', source);
    END LOOP;
END $$;

-- The backfill.
SELECT recount_kept_aggregates();
