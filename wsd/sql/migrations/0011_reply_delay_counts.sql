-- Agent performance's reply-delay median and p90 without reading a whole window of replies.
-- Per UTC hour and whole second of delay (floor(response_seconds)), the count of agent
-- replies (reply_delay_counts), kept by triggers in the transaction of the write, like the
-- kept tables of 0009. A percentile over [since, until) is then exact, as percentile_cont:
-- the window's histogram (whole hours from the kept rows, the partial hours at its ends
-- from the raw rows) finds the second holding each rank percentile_cont reads, and one
-- short range of messages_reply_second_idx (that second, inside the window) reads the
-- values at those ranks.
--
-- The same locking rule as 0009: one INSERT ... ON CONFLICT per row with its count rows
-- sorted by key; rows at zero are kept (readers skip them).

-- Whole hours (UTC): the agent-performance windows are `now - n days`, never aligned to a
-- local hour, so quarter-hours would only add rows to sum.
CREATE FUNCTION reply_hour(at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('1 hour', at, timestamptz '2000-01-01 00:00:00+00');

-- The delay's whole second is kept as float8 floor(response_seconds), the expression of the
-- index below, so every float8 (negative, huge, NaN) has a bucket and sorts in the bucket
-- order percentile_cont sorts the values in.
CREATE TABLE reply_delay_counts (
    hour    timestamptz NOT NULL,
    second  double precision NOT NULL,
    replies bigint NOT NULL,
    PRIMARY KEY (hour, second)
);

-- A second's replies in a time window, in one index range.
CREATE INDEX messages_reply_second_idx ON messages (floor(response_seconds), created_at)
    INCLUDE (response_seconds) WHERE role = 'agent' AND response_seconds IS NOT NULL;

-- The counted rows: agent messages with a delay (the `agent_replies` of activity_of).
CREATE FUNCTION recomputed_reply_delay_counts()
    RETURNS TABLE (hour timestamptz, second double precision, replies bigint) LANGUAGE sql STABLE AS $$
    SELECT reply_hour(created_at), floor(response_seconds), count(*)
      FROM messages
     WHERE role = 'agent' AND response_seconds IS NOT NULL AND created_at IS NOT NULL
     GROUP BY 1, 2;
$$;

CREATE FUNCTION keep_reply_delay_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reply_delay_counts AS c (hour, second, replies)
    SELECT reply_hour(d.at), floor(d.seconds), sum(d.sign)
      FROM (SELECT OLD.created_at, OLD.response_seconds, -1 WHERE TG_OP <> 'INSERT' AND OLD.role = 'agent'
            UNION ALL
            SELECT NEW.created_at, NEW.response_seconds, 1 WHERE TG_OP <> 'DELETE' AND NEW.role = 'agent')
           AS d(at, seconds, sign)
     WHERE d.at IS NOT NULL AND d.seconds IS NOT NULL
     GROUP BY 1, 2
    HAVING sum(d.sign) <> 0
    ORDER BY 1, 2
    ON CONFLICT (hour, second) DO UPDATE SET replies = c.replies + EXCLUDED.replies;
    RETURN NULL;
END $$;

-- Only agent replies fire it (user messages, the bulk of inserts, skip the call).
CREATE TRIGGER messages_reply_delay_counts_insert AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'agent' AND NEW.response_seconds IS NOT NULL)
    EXECUTE FUNCTION keep_reply_delay_counts();
CREATE TRIGGER messages_reply_delay_counts_delete AFTER DELETE ON messages
    FOR EACH ROW WHEN (OLD.role = 'agent' AND OLD.response_seconds IS NOT NULL)
    EXECUTE FUNCTION keep_reply_delay_counts();
CREATE TRIGGER messages_reply_delay_counts_update AFTER UPDATE ON messages
    FOR EACH ROW WHEN ((OLD.created_at, OLD.role, OLD.response_seconds)
                       IS DISTINCT FROM (NEW.created_at, NEW.role, NEW.response_seconds))
    EXECUTE FUNCTION keep_reply_delay_counts();

-- Per whole second of delay, the agent replies created in [since, until): whole hours from
-- reply_delay_counts, the partial hours at the ends from the raw rows.
CREATE FUNCTION reply_delays_in(since timestamptz, until timestamptz)
    RETURNS TABLE (second double precision, replies bigint) LANGUAGE sql STABLE AS $$
    WITH whole AS (  -- [first, last): the whole hours inside the window (may be empty)
        SELECT first, greatest(reply_hour(until), first) AS last
          FROM (SELECT least(CASE WHEN reply_hour(since) = since THEN since
                                  ELSE reply_hour(since) + interval '1 hour' END,
                             until) AS first) AS f
    )
    SELECT p.second, sum(p.replies)::bigint
      FROM (SELECT c.second, c.replies FROM reply_delay_counts AS c, whole AS w
             WHERE c.hour >= w.first AND c.hour < w.last
            UNION ALL  -- the ends as two ranges (an OR of them would scan every reply)
            SELECT floor(m.response_seconds), 1 FROM whole AS w, messages AS m
             WHERE m.role = 'agent' AND m.response_seconds IS NOT NULL
               AND m.created_at >= since AND m.created_at < w.first
            UNION ALL
            SELECT floor(m.response_seconds), 1 FROM whole AS w, messages AS m
             WHERE m.role = 'agent' AND m.response_seconds IS NOT NULL
               AND m.created_at >= w.last AND m.created_at < until) AS p
     GROUP BY p.second
    HAVING sum(p.replies) <> 0;
$$;

-- Rebuilding: 0009's function with reply_delay_counts added (the demo seeder's one pass
-- after its load, TRUNCATE of messages through 0009's truncate trigger).
CREATE OR REPLACE FUNCTION recount_kept_aggregates() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Writers' triggers wait until this rebuild commits, then add their rows' counts to it
    -- (the rebuild did not see their rows, still uncommitted).
    LOCK TABLE step_interval_counts, requirement_item_names, activity_counts, reply_delay_counts
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
END $$;

-- The backfill.
INSERT INTO reply_delay_counts SELECT * FROM recomputed_reply_delay_counts();
