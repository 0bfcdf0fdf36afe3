-- 0017: each lead's search text, kept beside the lead, so a search's exact count is one
-- bitmap scan of one narrow table.
--
-- A search matches a lead whose user's name, email or company contains the text
-- (user_search_text, 0001). Counted through users, every match cost a heap recheck on users
-- and then a probe of lead_qualifications by user_id: ~400 ms for a common surname at 1M
-- leads. lead_search holds (lead, that text) with its own trigram index; triggers keep it as
-- leads are written or moved to another user and as users change name, email or company. A
-- lead's delete removes its row (the foreign key). recount_kept_aggregates() rebuilds it too:
-- the demo seeder loads with triggers off.

CREATE TABLE lead_search (
    lead_id uuid PRIMARY KEY REFERENCES lead_qualifications (id) ON DELETE CASCADE,
    text    text NOT NULL
);

-- Each lead's search text recomputed from the raw rows: the rebuild, the backfill and the check.
CREATE FUNCTION recomputed_lead_search() RETURNS TABLE (lead_id uuid, text text)
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT l.id, user_search_text(u.full_name, u.email, u.company)
      FROM lead_qualifications AS l JOIN users AS u ON u.id = l.user_id;
$$;

CREATE FUNCTION lead_search_from_lead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lead_search (lead_id, text)
    SELECT NEW.id, user_search_text(u.full_name, u.email, u.company) FROM users AS u WHERE u.id = NEW.user_id
    ON CONFLICT ON CONSTRAINT lead_search_pkey DO UPDATE SET text = EXCLUDED.text;
    RETURN NULL;
END $$;

CREATE TRIGGER lead_search_on_lead AFTER INSERT OR UPDATE OF user_id ON lead_qualifications
    FOR EACH ROW EXECUTE FUNCTION lead_search_from_lead();

CREATE FUNCTION lead_search_from_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF user_search_text(NEW.full_name, NEW.email, NEW.company)
       IS DISTINCT FROM user_search_text(OLD.full_name, OLD.email, OLD.company) THEN
        UPDATE lead_search AS s SET text = user_search_text(NEW.full_name, NEW.email, NEW.company)
          FROM lead_qualifications AS l
         WHERE l.user_id = NEW.id AND s.lead_id = l.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER lead_search_on_user AFTER UPDATE OF full_name, email, company ON users
    FOR EACH ROW EXECUTE FUNCTION lead_search_from_user();

-- Rebuilding: 0016's recount_kept_aggregates() keeps its body under another name, and the
-- new one rebuilds the search rows after it.
ALTER FUNCTION recount_kept_aggregates() RENAME TO recount_kept_counts_and_days;
CREATE FUNCTION recount_kept_aggregates() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM recount_kept_counts_and_days();
    LOCK TABLE lead_search IN EXCLUSIVE MODE;
    DELETE FROM lead_search;
    INSERT INTO lead_search SELECT * FROM recomputed_lead_search();
END $$;

-- The backfill, then the index (built once, far cheaper than row by row).
INSERT INTO lead_search SELECT * FROM recomputed_lead_search();
CREATE INDEX lead_search_trgm_idx ON lead_search USING gin (text gin_trgm_ops);
ANALYZE lead_search;
