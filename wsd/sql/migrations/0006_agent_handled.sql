-- Agent performance at a million leads: whether the agent handled a lead's conversation is
-- kept on the lead, and the agent's forward moves have an index of their own.

ALTER TABLE lead_qualifications ADD COLUMN agent_handled boolean NOT NULL DEFAULT false;
UPDATE lead_qualifications AS l SET agent_handled = true
  FROM conversations AS c
 WHERE c.id = l.conversation_id AND c.first_agent_message_at IS NOT NULL;

-- The agent's first message in a conversation marks its leads as handled.
CREATE FUNCTION mark_leads_agent_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lead_qualifications SET agent_handled = true
     WHERE conversation_id = NEW.id AND NOT agent_handled;
    RETURN NULL;
END $$;
CREATE TRIGGER conversations_agent_handled AFTER UPDATE OF first_agent_message_at ON conversations
    FOR EACH ROW WHEN (OLD.first_agent_message_at IS NULL AND NEW.first_agent_message_at IS NOT NULL)
    EXECUTE FUNCTION mark_leads_agent_handled();

-- A lead linked to a conversation the agent already handled is handled too.
CREATE FUNCTION lead_agent_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.agent_handled := NEW.agent_handled OR EXISTS (
        SELECT 1 FROM conversations
         WHERE id = NEW.conversation_id AND first_agent_message_at IS NOT NULL);
    RETURN NEW;
END $$;
CREATE TRIGGER lead_qualifications_agent_handled BEFORE INSERT OR UPDATE OF conversation_id
    ON lead_qualifications FOR EACH ROW EXECUTE FUNCTION lead_agent_handled();

CREATE INDEX lead_qualifications_created_handled_idx ON lead_qualifications (created_at)
    INCLUDE (agent_handled, completed_at);
DROP INDEX lead_step_history_source_changed_idx;
CREATE INDEX lead_step_history_agent_advances_idx ON lead_step_history (changed_at) INCLUDE (lead_id)
    WHERE source = 'agent' AND to_step > from_step;
