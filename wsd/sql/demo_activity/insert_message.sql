-- name: insert_message(conversation_id, role, content)!
-- Adds a message written now; its triggers keep last_message_at, the lead's activity and
-- (for an agent reply) response_seconds. Returns nothing.
INSERT INTO messages (conversation_id, role, content)
VALUES (:conversation_id, :role, :content);
