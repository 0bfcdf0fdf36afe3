-- Leads per step, kept current by triggers so the pipeline, the funnel and the dashboard
-- never count a million rows: `current` = leads at the step now, `furthest` = leads whose
-- furthest step ever is this one (leads that reached a step = sum of furthest from it on).

CREATE TABLE lead_step_counts (
    step     lead_step PRIMARY KEY,
    current  bigint NOT NULL DEFAULT 0 CHECK (current >= 0),
    furthest bigint NOT NULL DEFAULT 0 CHECK (furthest >= 0)
);

-- Recomputes every count from the leads: after bulk loads that ran with triggers off, and
-- after TRUNCATE.
CREATE FUNCTION recount_lead_steps() RETURNS void LANGUAGE sql AS $$
    INSERT INTO lead_step_counts (step, current, furthest)
    SELECT s.step,
           (SELECT count(*) FROM lead_qualifications WHERE current_step = s.step),
           (SELECT count(*) FROM lead_qualifications WHERE furthest_step = s.step)
      FROM unnest(enum_range(NULL::lead_step)) AS s(step)
    ON CONFLICT (step) DO UPDATE SET current = EXCLUDED.current, furthest = EXCLUDED.furthest;
$$;
SELECT recount_lead_steps();

CREATE FUNCTION count_lead_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One step change can touch the counts twice (furthest, then current), in rows whose
    -- order differs between transactions: a transaction-wide lock taken first serializes
    -- count updates so two moves in opposite directions cannot deadlock. Step changes are
    -- rare next to reads, and the lock is held only until commit.
    PERFORM pg_advisory_xact_lock(727272);
    UPDATE lead_step_counts AS c
       SET current = c.current + d.current, furthest = c.furthest + d.furthest
      FROM (SELECT step, sum(dc) AS current, sum(df) AS furthest
              FROM (VALUES (OLD.current_step, -1, 0), (NEW.current_step, 1, 0),
                           (OLD.furthest_step, 0, -1), (NEW.furthest_step, 0, 1))
                   AS delta(step, dc, df)
             WHERE step IS NOT NULL
             GROUP BY step) AS d
     WHERE c.step = d.step AND (d.current <> 0 OR d.furthest <> 0);
    RETURN NULL;
END $$;

CREATE TRIGGER lead_step_counts_insert AFTER INSERT ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION count_lead_steps();
CREATE TRIGGER lead_step_counts_delete AFTER DELETE ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION count_lead_steps();
CREATE TRIGGER lead_step_counts_update AFTER UPDATE OF current_step, furthest_step ON lead_qualifications
    FOR EACH ROW
    WHEN (OLD.current_step IS DISTINCT FROM NEW.current_step
          OR OLD.furthest_step IS DISTINCT FROM NEW.furthest_step)
    EXECUTE FUNCTION count_lead_steps();

CREATE FUNCTION recount_lead_steps_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM recount_lead_steps();
    RETURN NULL;
END $$;
CREATE TRIGGER lead_step_counts_truncate AFTER TRUNCATE ON lead_qualifications
    FOR EACH STATEMENT EXECUTE FUNCTION recount_lead_steps_trigger();
