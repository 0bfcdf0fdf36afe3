-- name: meeting_by_id(meeting_id)$
-- Returns one meeting's document, or NULL for an unknown id.
SELECT meeting_document(m) FROM meetings AS m WHERE m.id = :meeting_id;
