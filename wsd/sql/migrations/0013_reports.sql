-- Reporting periods (issue 25): the per-period funnels kept like the figures of 0009, so a
-- period of up to a year is a sum over a few thousand rows at any data size.
--   * lead_cohort_counts: per UTC quarter-hour of creation and step, the leads created then
--     that are at the step now (`current`) and whose furthest step is it (`furthest`): the
--     cohort funnel and the pipeline of a period;
--   * step_entry_counts: per UTC quarter-hour and step, the leads that first entered the step
--     then (lead_step_entries): the activity funnel.
-- Quarter-hours for the reason 0009 gives: a local day's bounds are whole UTC quarters.
--
-- Locking: these counts change with a lead's step, so their triggers take the advisory lock
-- of lead_step_counts (0002) first; every step-count change is serialized behind that one
-- lock and cannot deadlock with another.

-- The UTC day holding `at` (the day buckets below).
CREATE FUNCTION utc_day(at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('1 day', at, timestamptz '2000-01-01 00:00:00+00');

CREATE TABLE lead_cohort_counts (
    quarter  timestamptz NOT NULL,
    step     lead_step NOT NULL,
    current  bigint NOT NULL DEFAULT 0,
    furthest bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (quarter, step)
);

CREATE FUNCTION recomputed_lead_cohort_counts()
    RETURNS TABLE (quarter timestamptz, step lead_step, current bigint, furthest bigint)
    LANGUAGE sql STABLE AS $$
    SELECT activity_quarter(l.created_at), s.step,
           count(*) FILTER (WHERE l.current_step = s.step),
           count(*) FILTER (WHERE l.furthest_step = s.step)
      FROM lead_qualifications AS l
      JOIN unnest(enum_range(NULL::lead_step)) AS s(step)
        ON s.step IN (l.current_step, l.furthest_step)
     GROUP BY 1, 2;
$$;

CREATE FUNCTION keep_lead_cohort_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(727272);
    INSERT INTO lead_cohort_counts AS c (quarter, step, current, furthest)
    SELECT activity_quarter(d.at), d.step, sum(d.dc), sum(d.df)
      FROM (SELECT OLD.created_at, OLD.current_step, -1, 0 WHERE TG_OP <> 'INSERT'
            UNION ALL SELECT OLD.created_at, OLD.furthest_step, 0, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL SELECT NEW.created_at, NEW.current_step, 1, 0 WHERE TG_OP <> 'DELETE'
            UNION ALL SELECT NEW.created_at, NEW.furthest_step, 0, 1 WHERE TG_OP <> 'DELETE')
           AS d(at, step, dc, df)
     GROUP BY 1, 2
    HAVING sum(d.dc) <> 0 OR sum(d.df) <> 0
    ORDER BY 1, 2
    ON CONFLICT (quarter, step) DO UPDATE
       SET current = c.current + EXCLUDED.current, furthest = c.furthest + EXCLUDED.furthest;
    RETURN NULL;
END $$;

CREATE TRIGGER lead_cohort_counts_change AFTER INSERT OR DELETE ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION keep_lead_cohort_counts();
CREATE TRIGGER lead_cohort_counts_update AFTER UPDATE ON lead_qualifications
    FOR EACH ROW WHEN ((OLD.created_at, OLD.current_step, OLD.furthest_step)
                       IS DISTINCT FROM (NEW.created_at, NEW.current_step, NEW.furthest_step))
    EXECUTE FUNCTION keep_lead_cohort_counts();

CREATE TABLE step_entry_counts (
    quarter timestamptz NOT NULL,
    step    lead_step NOT NULL,
    leads   bigint NOT NULL,
    PRIMARY KEY (quarter, step)
);

CREATE FUNCTION recomputed_step_entry_counts()
    RETURNS TABLE (quarter timestamptz, step lead_step, leads bigint) LANGUAGE sql STABLE AS $$
    SELECT activity_quarter(entered_at), step, count(*) FROM lead_step_entries GROUP BY 1, 2;
$$;

CREATE FUNCTION keep_step_entry_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- First of this table's count triggers (by name): every count row a step change locks
    -- after this is locked under the one lock of 0002, so two changes cannot deadlock.
    PERFORM pg_advisory_xact_lock(727272);
    INSERT INTO step_entry_counts AS c (quarter, step, leads)
    SELECT activity_quarter(d.at), d.step, sum(d.delta)
      FROM (SELECT OLD.entered_at, OLD.step, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL SELECT NEW.entered_at, NEW.step, 1 WHERE TG_OP <> 'DELETE') AS d(at, step, delta)
     GROUP BY 1, 2
    HAVING sum(d.delta) <> 0
    ORDER BY 1, 2
    ON CONFLICT (quarter, step) DO UPDATE SET leads = c.leads + EXCLUDED.leads;
    RETURN NULL;
END $$;

CREATE TRIGGER lead_step_entries_entry_counts AFTER INSERT OR DELETE ON lead_step_entries
    FOR EACH ROW EXECUTE FUNCTION keep_step_entry_counts();
CREATE TRIGGER lead_step_entries_entry_counts_update AFTER UPDATE ON lead_step_entries
    FOR EACH ROW WHEN ((OLD.entered_at, OLD.step) IS DISTINCT FROM (NEW.entered_at, NEW.step))
    EXECUTE FUNCTION keep_step_entry_counts();

-- Conversion medians over a period: per step, UTC day of entry and whole hour of the
-- interval from the previous step (floor(hours_from_previous), as step_interval_counts of
-- 0009 without days), the entries. The period's histogram (kept whole days, raw partial
-- days at its ends) locates the hour holding each middle rank; the rank is then read from
-- lead_step_entries_interval_hour_idx (that hour's entries inside the period, sorted).
CREATE TABLE step_interval_days (
    step        lead_step NOT NULL,
    day         timestamptz NOT NULL,
    hour_bucket bigint NOT NULL,
    leads       bigint NOT NULL,
    PRIMARY KEY (step, day, hour_bucket)
);

CREATE FUNCTION recomputed_step_interval_days()
    RETURNS TABLE (step lead_step, day timestamptz, hour_bucket bigint, leads bigint) LANGUAGE sql STABLE AS $$
    SELECT step, utc_day(entered_at), floor(hours_from_previous)::bigint, count(*)
      FROM lead_step_entries WHERE hours_from_previous IS NOT NULL
     GROUP BY 1, 2, 3;
$$;

CREATE FUNCTION keep_step_interval_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(727272);
    INSERT INTO step_interval_days AS c (step, day, hour_bucket, leads)
    SELECT d.step, utc_day(d.at), floor(d.hours)::bigint, sum(d.delta)
      FROM (SELECT OLD.step, OLD.entered_at, OLD.hours_from_previous, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.step, NEW.entered_at, NEW.hours_from_previous, 1 WHERE TG_OP <> 'DELETE')
           AS d(step, at, hours, delta)
     WHERE d.hours IS NOT NULL
     GROUP BY 1, 2, 3
    HAVING sum(d.delta) <> 0
    ORDER BY 1, 2, 3
    ON CONFLICT (step, day, hour_bucket) DO UPDATE SET leads = c.leads + EXCLUDED.leads;
    RETURN NULL;
END $$;
CREATE TRIGGER lead_step_entries_interval_days AFTER INSERT OR DELETE ON lead_step_entries
    FOR EACH ROW EXECUTE FUNCTION keep_step_interval_days();
CREATE TRIGGER lead_step_entries_interval_days_update AFTER UPDATE ON lead_step_entries
    FOR EACH ROW WHEN ((OLD.step, OLD.entered_at, OLD.hours_from_previous)
                       IS DISTINCT FROM (NEW.step, NEW.entered_at, NEW.hours_from_previous))
    EXECUTE FUNCTION keep_step_interval_days();

CREATE INDEX lead_step_entries_interval_hour_idx
    ON lead_step_entries (step, floor(hours_from_previous), entered_at) INCLUDE (hours_from_previous)
    WHERE hours_from_previous IS NOT NULL;

-- The drill-downs' ranges: leads created in a period at a furthest step, entries of a step
-- in a period (with the interval the period's conversion medians read).
CREATE INDEX lead_qualifications_furthest_created_idx ON lead_qualifications (furthest_step, created_at DESC, id DESC);
CREATE INDEX lead_step_entries_step_entered_idx ON lead_step_entries (step, entered_at)
    INCLUDE (lead_id, hours_from_previous);

-- ---------------------------------------------------------------------------------------
-- Time in step: when each lead entered the step it is at now (the latest history row into
-- it; its creation for a lead without one), and whether the agent is on in its
-- conversation (false without one), both kept on the lead so that a step's leads sorted by
-- how long they have been there, per agent on/off, are one index range: the exact median
-- and p90 are read at their ranks, the stalled count is a range count.

ALTER TABLE lead_qualifications ADD COLUMN step_entered_at timestamptz,
                                ADD COLUMN agent_on boolean NOT NULL DEFAULT false;

-- When the lead entered `step` last: its latest history row into it, else `fallback`.
CREATE FUNCTION lead_step_since(lead uuid, step lead_step, fallback timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE
    RETURN coalesce((SELECT h.changed_at FROM lead_step_history AS h
                      WHERE h.lead_id = lead AND h.to_step = step
                      ORDER BY h.changed_at DESC, h.id DESC LIMIT 1), fallback);

-- A step change is written history row first, then the lead's step (wsd, the agent worker
-- and the demo writer all do): the row is there when the lead's step changes.
CREATE FUNCTION keep_lead_step_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.current_step IS DISTINCT FROM OLD.current_step THEN
        NEW.step_entered_at := lead_step_since(NEW.id, NEW.current_step, NEW.created_at);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.conversation_id IS DISTINCT FROM OLD.conversation_id THEN
        NEW.agent_on := coalesce((SELECT c.agent_enabled FROM conversations AS c
                                   WHERE c.id = NEW.conversation_id), false);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lead_qualifications_step_time BEFORE INSERT OR UPDATE OF current_step, conversation_id
    ON lead_qualifications FOR EACH ROW EXECUTE FUNCTION keep_lead_step_time();

CREATE FUNCTION copy_agent_switch_to_leads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lead_qualifications SET agent_on = NEW.agent_enabled
     WHERE conversation_id = NEW.id AND agent_on IS DISTINCT FROM NEW.agent_enabled;
    RETURN NULL;
END $$;
CREATE TRIGGER conversations_agent_on AFTER UPDATE OF agent_enabled ON conversations
    FOR EACH ROW WHEN (OLD.agent_enabled IS DISTINCT FROM NEW.agent_enabled)
    EXECUTE FUNCTION copy_agent_switch_to_leads();

-- What the two columns should hold for every lead, from the raw rows.
CREATE FUNCTION recomputed_lead_step_times()
    RETURNS TABLE (id uuid, step_entered_at timestamptz, agent_on boolean) LANGUAGE sql STABLE AS $$
    SELECT l.id, coalesce(h.changed_at, l.created_at), coalesce(c.agent_enabled, false)
      FROM lead_qualifications AS l
      LEFT JOIN conversations AS c ON c.id = l.conversation_id
      LEFT JOIN (SELECT DISTINCT ON (lead_id, to_step) lead_id, to_step, changed_at
                   FROM lead_step_history ORDER BY lead_id, to_step, changed_at DESC, id DESC) AS h
        ON h.lead_id = l.id AND h.to_step = l.current_step;
$$;

-- The backfill, before the index and the counts below exist.
UPDATE lead_qualifications AS l SET step_entered_at = r.step_entered_at, agent_on = r.agent_on
  FROM recomputed_lead_step_times() AS r
 WHERE l.id = r.id;

-- Agent on/off last: a step's leads in order of entry, for both values or (read from the
-- index alone) one.
CREATE INDEX lead_qualifications_step_time_idx ON lead_qualifications (current_step, step_entered_at, agent_on);

-- Per step, agent on/off and UTC day of step_entered_at, the leads at the step now: where a
-- rank of time in step lies is a running sum over a few hundred rows, and the rank is then
-- one short range of the index above (that day's leads); a stalled count is whole days
-- plus one day's range. Changed with the lead's step, so under 0002's advisory lock.
CREATE TABLE step_time_counts (
    step     lead_step NOT NULL,
    agent_on boolean NOT NULL,
    day      timestamptz NOT NULL,
    leads    bigint NOT NULL,
    PRIMARY KEY (step, agent_on, day)
);

CREATE FUNCTION recomputed_step_time_counts()
    RETURNS TABLE (step lead_step, agent_on boolean, day timestamptz, leads bigint) LANGUAGE sql STABLE AS $$
    SELECT current_step, agent_on, utc_day(step_entered_at), count(*)
      FROM lead_qualifications WHERE step_entered_at IS NOT NULL
     GROUP BY 1, 2, 3;
$$;

CREATE FUNCTION keep_step_time_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(727272);
    INSERT INTO step_time_counts AS c (step, agent_on, day, leads)
    SELECT d.step, d.agent_on, utc_day(d.at), sum(d.delta)
      FROM (SELECT OLD.current_step, OLD.agent_on, OLD.step_entered_at, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.current_step, NEW.agent_on, NEW.step_entered_at, 1 WHERE TG_OP <> 'DELETE')
           AS d(step, agent_on, at, delta)
     WHERE d.at IS NOT NULL
     GROUP BY 1, 2, 3
    HAVING sum(d.delta) <> 0
    ORDER BY 1, 2, 3
    ON CONFLICT (step, agent_on, day) DO UPDATE SET leads = c.leads + EXCLUDED.leads;
    RETURN NULL;
END $$;
CREATE TRIGGER lead_qualifications_step_time_counts AFTER INSERT OR DELETE ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION keep_step_time_counts();
CREATE TRIGGER lead_qualifications_step_time_counts_update AFTER UPDATE ON lead_qualifications
    FOR EACH ROW WHEN ((OLD.current_step, OLD.agent_on, OLD.step_entered_at)
                       IS DISTINCT FROM (NEW.current_step, NEW.agent_on, NEW.step_entered_at))
    EXECUTE FUNCTION keep_step_time_counts();

-- ---------------------------------------------------------------------------------------
-- Popular features and integrations over a period: per kind, UTC day of the item's
-- creation, folded name and spelling, how many were added; kind `requirements` counts the
-- requirements created that day (name and folded name ''), the share's divisor. A period
-- is its whole UTC days from here, the partial days at its ends from the raw rows (by
-- their created_at indexes below). Each row is counted by its own created_at, so a cascade
-- deleting a lead's requirements and items uncounts each from its own row.
CREATE TABLE requirement_item_days (
    kind       text NOT NULL CHECK (kind IN ('features', 'integrations', 'requirements')),
    day        timestamptz NOT NULL,
    normalized text NOT NULL,
    name       text NOT NULL,
    items      bigint NOT NULL,
    PRIMARY KEY (kind, day, normalized, name)
);

CREATE FUNCTION recomputed_requirement_item_days()
    RETURNS TABLE (kind text, day timestamptz, normalized text, name text, items bigint)
    LANGUAGE sql STABLE AS $$
    SELECT 'features', utc_day(created_at), normalized_name(name), name, count(*) FROM features GROUP BY 2, 3, 4
    UNION ALL
    SELECT 'integrations', utc_day(created_at), normalized_name(name), name, count(*) FROM integrations
     GROUP BY 2, 3, 4
    UNION ALL
    SELECT 'requirements', utc_day(created_at), '', '', count(*) FROM requirements GROUP BY 2;
$$;

-- One function for the three tables: a requirements row has no name (counted under '').
CREATE FUNCTION keep_requirement_item_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO requirement_item_days AS c (kind, day, normalized, name, items)
    SELECT TG_TABLE_NAME, utc_day(d.at), normalized_name(d.name), d.name, sum(d.delta)
      FROM (SELECT OLD.created_at, coalesce(to_jsonb(OLD) ->> 'name', ''), -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.created_at, coalesce(to_jsonb(NEW) ->> 'name', ''), 1 WHERE TG_OP <> 'DELETE')
           AS d(at, name, delta)
     GROUP BY 1, 2, 3, 4
    HAVING sum(d.delta) <> 0
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (kind, day, normalized, name) DO UPDATE SET items = c.items + EXCLUDED.items;
    RETURN NULL;
END $$;

CREATE TRIGGER features_item_days AFTER INSERT OR DELETE ON features
    FOR EACH ROW EXECUTE FUNCTION keep_requirement_item_days();
CREATE TRIGGER features_item_days_update AFTER UPDATE OF name, created_at ON features
    FOR EACH ROW WHEN ((OLD.name, OLD.created_at) IS DISTINCT FROM (NEW.name, NEW.created_at))
    EXECUTE FUNCTION keep_requirement_item_days();
CREATE TRIGGER integrations_item_days AFTER INSERT OR DELETE ON integrations
    FOR EACH ROW EXECUTE FUNCTION keep_requirement_item_days();
CREATE TRIGGER integrations_item_days_update AFTER UPDATE OF name, created_at ON integrations
    FOR EACH ROW WHEN ((OLD.name, OLD.created_at) IS DISTINCT FROM (NEW.name, NEW.created_at))
    EXECUTE FUNCTION keep_requirement_item_days();
CREATE TRIGGER requirements_item_days AFTER INSERT OR DELETE ON requirements
    FOR EACH ROW EXECUTE FUNCTION keep_requirement_item_days();
CREATE TRIGGER requirements_item_days_update AFTER UPDATE OF created_at ON requirements
    FOR EACH ROW WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION keep_requirement_item_days();

CREATE INDEX features_created_idx ON features (created_at) INCLUDE (name, requirements_id);
CREATE INDEX integrations_created_idx ON integrations (created_at) INCLUDE (name, requirements_id);
CREATE INDEX requirements_created_idx ON requirements (created_at);

-- A lead as a pipeline column shows it (leads.get_lead_pipeline, with or without a period).
CREATE FUNCTION lead_summary(l lead_qualifications, u users, agent_enabled boolean)
    RETURNS json LANGUAGE sql STABLE
    RETURN json_build_object(
        'id', l.id, 'user_id', l.user_id, 'full_name', u.full_name, 'company', u.company,
        'email', u.email, 'consent', l.consent, 'agent_enabled', agent_enabled,
        'created_at', l.created_at, 'updated_at', l.updated_at);

-- Rebuilding: 0011's function with the tables and columns above added.
CREATE OR REPLACE FUNCTION recount_kept_aggregates() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE step_interval_counts, requirement_item_names, activity_counts, reply_delay_counts,
               lead_cohort_counts, step_entry_counts, step_time_counts, requirement_item_days,
               step_interval_days
        IN EXCLUSIVE MODE;
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
    DELETE FROM reply_delay_counts;
    INSERT INTO reply_delay_counts SELECT * FROM recomputed_reply_delay_counts();
    DELETE FROM lead_cohort_counts;
    INSERT INTO lead_cohort_counts SELECT * FROM recomputed_lead_cohort_counts();
    DELETE FROM step_entry_counts;
    INSERT INTO step_entry_counts SELECT * FROM recomputed_step_entry_counts();
    UPDATE lead_qualifications AS l SET step_entered_at = r.step_entered_at, agent_on = r.agent_on
      FROM recomputed_lead_step_times() AS r
     WHERE l.id = r.id AND (l.step_entered_at, l.agent_on) IS DISTINCT FROM (r.step_entered_at, r.agent_on);
    DELETE FROM step_time_counts;
    INSERT INTO step_time_counts SELECT * FROM recomputed_step_time_counts();
INSERT INTO requirement_item_days SELECT * FROM recomputed_requirement_item_days();
    DELETE FROM requirement_item_days;
    INSERT INTO requirement_item_days SELECT * FROM recomputed_requirement_item_days();
    DELETE FROM step_interval_days;
    INSERT INTO step_interval_days SELECT * FROM recomputed_step_interval_days();
END $$;

-- The backfill.
INSERT INTO step_time_counts SELECT * FROM recomputed_step_time_counts();
INSERT INTO requirement_item_days SELECT * FROM recomputed_requirement_item_days();
INSERT INTO step_interval_days SELECT * FROM recomputed_step_interval_days();
INSERT INTO lead_cohort_counts SELECT * FROM recomputed_lead_cohort_counts();
INSERT INTO step_entry_counts SELECT * FROM recomputed_step_entry_counts();
