-- Meetings booked for leads the agent handled, counted without joining a million leads:
-- the lead's agent_handled is copied onto its meetings and kept in step.

ALTER TABLE meetings ADD COLUMN lead_agent_handled boolean NOT NULL DEFAULT false;
UPDATE meetings AS m SET lead_agent_handled = true
  FROM lead_qualifications AS l
 WHERE l.id = m.lead_id AND l.agent_handled;

CREATE FUNCTION meeting_lead_agent_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.lead_agent_handled := coalesce(
        (SELECT agent_handled FROM lead_qualifications WHERE id = NEW.lead_id), false);
    RETURN NEW;
END $$;
CREATE TRIGGER meetings_lead_agent_handled BEFORE INSERT OR UPDATE OF lead_id ON meetings
    FOR EACH ROW EXECUTE FUNCTION meeting_lead_agent_handled();

CREATE FUNCTION lead_handled_to_meetings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meetings SET lead_agent_handled = NEW.agent_handled WHERE lead_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER lead_qualifications_handled_to_meetings AFTER UPDATE OF agent_handled ON lead_qualifications
    FOR EACH ROW WHEN (OLD.agent_handled IS DISTINCT FROM NEW.agent_handled)
    EXECUTE FUNCTION lead_handled_to_meetings();

CREATE INDEX meetings_created_handled_idx ON meetings (created_at) INCLUDE (lead_agent_handled);
DROP INDEX meetings_created_at_idx;
