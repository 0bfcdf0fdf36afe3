-- Per-UTC-day roll-ups of 0009's activity_counts, 0011's reply_delay_counts and 0013's
-- lead_cohort_counts, so that a reporting period of weeks or months sums a few rows per day
-- instead of 96 quarter-hours (or 24 hours of per-second delay counts) per day: a 90-day
-- period reads 90 day rows per kind (step) instead of 8,640 quarters.
--   * activity_days: per UTC day and kind, the sum of that day's activity_counts rows;
--   * reply_delay_days: per UTC day and whole second of delay, the sum of that day's
--     reply_delay_counts rows;
--   * lead_cohort_days: per UTC day of creation and step, the sum of that day's
--     lead_cohort_counts rows.
-- Kept by row triggers on those kept tables: every change of a quarter (hour) row adds
-- its difference to its day's row, in the same transaction, so whatever changes the kept
-- rows keeps the days right with them; recount_kept_aggregates() rebuilds them too (below).
--
-- Locking: a day row is locked only right after a quarter (hour) row of the same kind (second)
-- and day, within the statement that changed that row, in the order of the kept rows (sorted
-- by kind and quarter, or hour and second); so the day rows add no new lock order (the
-- cohort counts are serialized behind 0013's advisory lock anyway). Rows at zero are kept
-- (readers skip them).

CREATE TABLE activity_days (
    day    timestamptz NOT NULL,
    kind   text NOT NULL,
    events bigint NOT NULL,
    total  numeric NOT NULL,
    PRIMARY KEY (kind, day)
);

CREATE FUNCTION keep_activity_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activity_days AS d (day, kind, events, total)
    SELECT utc_day(c.quarter), c.kind, sum(c.sign * c.events), sum(c.sign * c.total)
      FROM (SELECT OLD.quarter, OLD.kind, OLD.events, OLD.total, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.quarter, NEW.kind, NEW.events, NEW.total, 1 WHERE TG_OP <> 'DELETE')
           AS c(quarter, kind, events, total, sign)
     GROUP BY 1, 2
    HAVING sum(c.sign * c.events) <> 0 OR sum(c.sign * c.total) <> 0
    ORDER BY 2, 1
    ON CONFLICT (kind, day) DO UPDATE SET events = d.events + EXCLUDED.events, total = d.total + EXCLUDED.total;
    RETURN NULL;
END $$;

CREATE TRIGGER activity_counts_days AFTER INSERT OR UPDATE OR DELETE ON activity_counts
    FOR EACH ROW EXECUTE FUNCTION keep_activity_days();

CREATE TABLE reply_delay_days (
    day     timestamptz NOT NULL,
    second  double precision NOT NULL,
    replies bigint NOT NULL,
    PRIMARY KEY (day, second)
);

CREATE FUNCTION keep_reply_delay_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reply_delay_days AS d (day, second, replies)
    SELECT utc_day(c.hour), c.second, sum(c.sign * c.replies)
      FROM (SELECT OLD.hour, OLD.second, OLD.replies, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.hour, NEW.second, NEW.replies, 1 WHERE TG_OP <> 'DELETE') AS c(hour, second, replies, sign)
     GROUP BY 1, 2
    HAVING sum(c.sign * c.replies) <> 0
    ORDER BY 1, 2
    ON CONFLICT (day, second) DO UPDATE SET replies = d.replies + EXCLUDED.replies;
    RETURN NULL;
END $$;

CREATE TRIGGER reply_delay_counts_days AFTER INSERT OR UPDATE OR DELETE ON reply_delay_counts
    FOR EACH ROW EXECUTE FUNCTION keep_reply_delay_days();

CREATE TABLE lead_cohort_days (
    day      timestamptz NOT NULL,
    step     lead_step NOT NULL,
    current  bigint NOT NULL,
    furthest bigint NOT NULL,
    PRIMARY KEY (day, step)
);

CREATE FUNCTION keep_lead_cohort_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_cohort_days AS d (day, step, current, furthest)
    SELECT utc_day(c.quarter), c.step, sum(c.sign * c.current), sum(c.sign * c.furthest)
      FROM (SELECT OLD.quarter, OLD.step, OLD.current, OLD.furthest, -1 WHERE TG_OP <> 'INSERT'
            UNION ALL
            SELECT NEW.quarter, NEW.step, NEW.current, NEW.furthest, 1 WHERE TG_OP <> 'DELETE')
           AS c(quarter, step, current, furthest, sign)
     GROUP BY 1, 2
    HAVING sum(c.sign * c.current) <> 0 OR sum(c.sign * c.furthest) <> 0
    ORDER BY 1, 2
    ON CONFLICT (day, step) DO UPDATE
       SET current = d.current + EXCLUDED.current, furthest = d.furthest + EXCLUDED.furthest;
    RETURN NULL;
END $$;

CREATE TRIGGER lead_cohort_counts_days AFTER INSERT OR UPDATE OR DELETE ON lead_cohort_counts
    FOR EACH ROW EXECUTE FUNCTION keep_lead_cohort_days();

-- Agent performance's median and p90 read the values at their ranks inside one second of
-- delay: this index holds each second's replies in value order with their time, so a rank
-- is an OFFSET into that order (the window checked in the index) from the nearer end,
-- instead of sorting all of the window's replies of that second (~90,000 over 90 days at 1M
-- leads).
CREATE INDEX messages_reply_value_idx ON messages (floor(response_seconds), response_seconds)
    INCLUDE (created_at) WHERE role = 'agent' AND response_seconds IS NOT NULL;

-- The same for the period conversion stats' medians: each whole hour of interval's step
-- entries in value order with their entry time.
CREATE INDEX lead_step_entries_interval_value_idx
    ON lead_step_entries (step, floor(hours_from_previous), hours_from_previous) INCLUDE (entered_at)
    WHERE hours_from_previous IS NOT NULL;

-- What the day rows must hold: the sums of the kept rows (verify-aggregates compares them).
CREATE FUNCTION recomputed_activity_days()
    RETURNS TABLE (day timestamptz, kind text, events bigint, total numeric) LANGUAGE sql STABLE AS $$
    SELECT utc_day(quarter), kind, sum(events)::bigint, sum(total) FROM activity_counts GROUP BY 1, 2;
$$;
CREATE FUNCTION recomputed_reply_delay_days()
    RETURNS TABLE (day timestamptz, second double precision, replies bigint) LANGUAGE sql STABLE AS $$
    SELECT utc_day(hour), second, sum(replies)::bigint FROM reply_delay_counts GROUP BY 1, 2;
$$;

CREATE FUNCTION recomputed_lead_cohort_days()
    RETURNS TABLE (day timestamptz, step lead_step, current bigint, furthest bigint) LANGUAGE sql STABLE AS $$
    SELECT utc_day(quarter), step, sum(current)::bigint, sum(furthest)::bigint FROM lead_cohort_counts GROUP BY 1, 2;
$$;

-- Per step, the leads created in [since, until) (whole UTC quarter-hours, as a period's
-- local midnights are) that are at the step now (`current`) and whose furthest step is it
-- (`furthest`): whole UTC days from lead_cohort_days, the quarters around them from
-- lead_cohort_counts. Steps without leads are left out.
CREATE FUNCTION cohort_in(since timestamptz, until timestamptz)
    RETURNS TABLE (step lead_step, current bigint, furthest bigint) LANGUAGE sql STABLE AS $$
    WITH days AS (  -- [first_day, last_day): the whole UTC days inside the period (may be empty)
        SELECT d.first_day, greatest(utc_day(until), d.first_day) AS last_day
          FROM (SELECT least(CASE WHEN utc_day(since) = since THEN since
                                  ELSE utc_day(since) + interval '1 day' END,
                             until) AS first_day) AS d
    )
    SELECT p.step, sum(p.current)::bigint, sum(p.furthest)::bigint
      FROM (SELECT c.step, c.current, c.furthest FROM lead_cohort_days AS c, days AS d
             WHERE c.day >= d.first_day AND c.day < d.last_day
            UNION ALL
            SELECT c.step, c.current, c.furthest FROM lead_cohort_counts AS c, days AS d
             WHERE c.quarter >= since AND c.quarter < d.first_day
            UNION ALL
            SELECT c.step, c.current, c.furthest FROM lead_cohort_counts AS c, days AS d
             WHERE c.quarter >= d.last_day AND c.quarter < until) AS p
     GROUP BY p.step;
$$;

-- 0009's activity_in with whole UTC days read from activity_days: [since, until) is cut into
-- the partial quarters at its ends (raw rows), the whole quarters before its first whole
-- day and after its last (activity_counts), and its whole days (activity_days).
CREATE OR REPLACE FUNCTION activity_in(since timestamptz, until timestamptz)
    RETURNS TABLE (kind text, events bigint, total numeric) LANGUAGE sql STABLE AS $$
    WITH whole AS (  -- [first, last): the whole quarters inside the window (may be empty)
        SELECT first, greatest(activity_quarter(until), first) AS last
          FROM (SELECT least(CASE WHEN activity_quarter(since) = since THEN since
                                  ELSE activity_quarter(since) + interval '15 minutes' END,
                             until) AS first) AS f
    ), days AS (  -- [first_day, last_day): the whole UTC days inside [first, last) (may be empty)
        SELECT w.first, w.last, d.first_day, greatest(utc_day(w.last), d.first_day) AS last_day
          FROM whole AS w,
               LATERAL (SELECT least(CASE WHEN utc_day(w.first) = w.first THEN w.first
                                          ELSE utc_day(w.first) + interval '1 day' END,
                                     w.last) AS first_day) AS d
    )
    SELECT p.kind, sum(p.events)::bigint, sum(p.total)
      FROM (SELECT a.kind, a.events, a.total FROM activity_days AS a, days AS d
             WHERE a.day >= d.first_day AND a.day < d.last_day
            UNION ALL
            SELECT c.kind, c.events, c.total FROM activity_counts AS c, days AS d
             WHERE c.quarter >= d.first AND c.quarter < d.first_day
            UNION ALL
            SELECT c.kind, c.events, c.total FROM activity_counts AS c, days AS d
             WHERE c.quarter >= d.last_day AND c.quarter < d.last
            UNION ALL
            SELECT e.* FROM days AS d, activity_between(since, d.first) AS e
            UNION ALL
            SELECT e.* FROM days AS d, activity_between(d.last, until) AS e) AS p
     GROUP BY p.kind;
$$;

-- 0011's reply_delays_in with whole UTC days read from reply_delay_days, cut the same way
-- (raw ends, whole hours around the days, whole days).
CREATE OR REPLACE FUNCTION reply_delays_in(since timestamptz, until timestamptz)
    RETURNS TABLE (second double precision, replies bigint) LANGUAGE sql STABLE AS $$
    WITH whole AS (  -- [first, last): the whole hours inside the window (may be empty)
        SELECT first, greatest(reply_hour(until), first) AS last
          FROM (SELECT least(CASE WHEN reply_hour(since) = since THEN since
                                  ELSE reply_hour(since) + interval '1 hour' END,
                             until) AS first) AS f
    ), days AS (  -- [first_day, last_day): the whole UTC days inside [first, last) (may be empty)
        SELECT w.first, w.last, d.first_day, greatest(utc_day(w.last), d.first_day) AS last_day
          FROM whole AS w,
               LATERAL (SELECT least(CASE WHEN utc_day(w.first) = w.first THEN w.first
                                          ELSE utc_day(w.first) + interval '1 day' END,
                                     w.last) AS first_day) AS d
    )
    SELECT p.second, sum(p.replies)::bigint
      FROM (SELECT r.second, r.replies FROM reply_delay_days AS r, days AS d
             WHERE r.day >= d.first_day AND r.day < d.last_day
            UNION ALL
            SELECT c.second, c.replies FROM reply_delay_counts AS c, days AS d
             WHERE c.hour >= d.first AND c.hour < d.first_day
            UNION ALL
            SELECT c.second, c.replies FROM reply_delay_counts AS c, days AS d
             WHERE c.hour >= d.last_day AND c.hour < d.last
            UNION ALL  -- the ends as two ranges (an OR of them would scan every reply)
            SELECT floor(m.response_seconds), 1 FROM days AS d, messages AS m
             WHERE m.role = 'agent' AND m.response_seconds IS NOT NULL
               AND m.created_at >= since AND m.created_at < d.first
            UNION ALL
            SELECT floor(m.response_seconds), 1 FROM days AS d, messages AS m
             WHERE m.role = 'agent' AND m.response_seconds IS NOT NULL
               AND m.created_at >= d.last AND m.created_at < until) AS p
     GROUP BY p.second
    HAVING sum(p.replies) <> 0;
$$;

-- Rebuilding: 0013's recount_kept_aggregates() keeps its body under another name, and the
-- new one rebuilds the day tables after it. The triggers above do not suffice there: the
-- demo seeder recounts with triggers off (session_replication_role = replica). The counts'
-- tables are locked first (by 0013's function), then the days', the order writers take
-- them in.
ALTER FUNCTION recount_kept_aggregates() RENAME TO recount_kept_counts;
CREATE FUNCTION recount_kept_aggregates() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM recount_kept_counts();
    LOCK TABLE activity_days, reply_delay_days, lead_cohort_days IN EXCLUSIVE MODE;
    DELETE FROM activity_days;
    INSERT INTO activity_days SELECT * FROM recomputed_activity_days();
    DELETE FROM reply_delay_days;
    INSERT INTO reply_delay_days SELECT * FROM recomputed_reply_delay_days();
    DELETE FROM lead_cohort_days;
    INSERT INTO lead_cohort_days SELECT * FROM recomputed_lead_cohort_days();
END $$;

-- The backfill.
INSERT INTO activity_days SELECT * FROM recomputed_activity_days();
INSERT INTO reply_delay_days SELECT * FROM recomputed_reply_delay_days();
INSERT INTO lead_cohort_days SELECT * FROM recomputed_lead_cohort_days();

-- Statistics for the new tables now, so the first reports after the migration are planned
-- on them rather than on defaults (autovacuum would only get to them later).
ANALYZE activity_days, reply_delay_days, lead_cohort_days;
