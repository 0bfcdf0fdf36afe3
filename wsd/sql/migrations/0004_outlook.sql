-- Meetings kept in step with an Outlook calendar. The row is the desired state; its sync
-- state says whether Outlook has caught up: sync_version counts local changes that need
-- pushing, synced_version the last one Outlook confirmed.

ALTER TABLE meetings
    ADD COLUMN mailbox text NOT NULL DEFAULT '',
    ADD COLUMN outlook_change_key text,
    ADD COLUMN sync_version integer NOT NULL DEFAULT 0,
    ADD COLUMN synced_version integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker pushing the meeting holds it until then; a crashed worker's hold runs out.
    ADD COLUMN sync_claimed_until timestamptz;

DROP INDEX meetings_unsynced_idx;
CREATE INDEX meetings_due_idx ON meetings (next_attempt_at) WHERE sync_status IN ('pending', 'failed');
CREATE INDEX meetings_mailbox_start_idx ON meetings (mailbox, start_time) WHERE status = 'scheduled';
CREATE UNIQUE INDEX meetings_outlook_event_key ON meetings (outlook_event_id) WHERE outlook_event_id IS NOT NULL;

-- Events made in Outlook itself (not by wsd): busy time when offering meeting slots.
CREATE TABLE outlook_busy (
    mailbox     text NOT NULL,
    event_id    text NOT NULL,
    subject     text,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    show_as     text NOT NULL DEFAULT 'busy',
    PRIMARY KEY (mailbox, event_id)
);
CREATE INDEX outlook_busy_mailbox_start_idx ON outlook_busy (mailbox, start_time);

-- Where the incremental calendar sync of each mailbox stands.
CREATE TABLE outlook_sync_state (
    mailbox          text PRIMARY KEY,
    delta_link       text,
    window_start     timestamptz,
    window_end       timestamptz,
    last_success_at  timestamptz,
    last_attempt_at  timestamptz,
    last_error       text
);

-- A meeting as the dashboard receives it.
CREATE FUNCTION meeting_document(m meetings) RETURNS json LANGUAGE sql STABLE
    RETURN json_build_object(
        'id', m.id, 'lead_id', m.lead_id, 'user_id', m.user_id, 'subject', m.subject,
        'start_time', m.start_time, 'end_time', m.end_time, 'attendee_email', m.attendee_email,
        'status', m.status, 'outlook_event_id', m.outlook_event_id, 'sync_status', m.sync_status,
        'last_error', m.last_error, 'last_synced_at', m.last_synced_at,
        'created_at', m.created_at, 'updated_at', m.updated_at);
