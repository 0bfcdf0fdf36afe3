-- Rules the API enforces, held by the database so Python and SQL cannot disagree.

-- Names are unique per requirement once trimmed, case-folded and inner white space collapsed.
-- "White space" is Python's str.isspace() set (the payload check trims with str.strip()), so
-- U+00A0 and the other Unicode spaces fold like an ASCII space. This is the only definition:
-- wsd's Python code never normalises names itself.
CREATE OR REPLACE FUNCTION normalized_name(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(btrim(regexp_replace(
        name, '[\t\n\u000b\f\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+',
        ' ', 'g')));

REINDEX INDEX features_requirement_name_key;
REINDEX INDEX features_normalized_name_idx;
REINDEX INDEX integrations_requirement_name_key;
REINDEX INDEX integrations_normalized_name_idx;

-- A meeting's status as clients see it: a scheduled meeting whose end has passed is
-- `completed` (nothing else produces that status; cancelled stays cancelled).
CREATE FUNCTION meeting_status(m meetings) RETURNS text LANGUAGE sql STABLE
    RETURN CASE WHEN m.status = 'scheduled' AND m.end_time <= now() THEN 'completed' ELSE m.status END;

CREATE OR REPLACE FUNCTION meeting_document(m meetings) RETURNS json LANGUAGE sql STABLE
    RETURN json_build_object(
        'id', m.id, 'lead_id', m.lead_id, 'user_id', m.user_id, 'subject', m.subject,
        'start_time', m.start_time, 'end_time', m.end_time, 'attendee_email', m.attendee_email,
        'status', meeting_status(m), 'outlook_event_id', m.outlook_event_id,
        'sync_status', m.sync_status, 'last_error', m.last_error, 'last_synced_at', m.last_synced_at,
        'created_at', m.created_at, 'updated_at', m.updated_at);

-- A lead as the leads list shows it, now with its conversation's agent_enabled (the
-- specification: every handler respects conversations.agent_enabled), NULL without one.
CREATE OR REPLACE FUNCTION lead_document(l lead_qualifications, u users, b bant_data, r requirements)
    RETURNS json LANGUAGE sql STABLE
    RETURN json_build_object(
        'id', l.id, 'user_id', l.user_id, 'conversation_id', l.conversation_id,
        'agent_enabled', (SELECT c.agent_enabled FROM conversations AS c WHERE c.id = l.conversation_id),
        'current_step', l.current_step, 'consent', l.consent, 'created_at', l.created_at,
        'updated_at', l.updated_at, 'completed_at', l.completed_at,
        'user', json_build_object('full_name', u.full_name, 'email', u.email,
                                  'phone', u.phone, 'company', u.company),
        'bant_data', CASE WHEN b.id IS NOT NULL THEN json_build_object(
            'budget', b.budget, 'authority', b.authority, 'need', b.need, 'timeline', b.timeline) END,
        'requirements', CASE WHEN r.id IS NOT NULL THEN json_build_object(
            'id', r.id, 'app_type', r.app_type, 'deadline', r.deadline) END);
