-- name: lock_conversation(conversation_id)^
-- Returns {agent_enabled, is_open} of the conversation, locked until the transaction ends;
-- no row for an unknown conversation.
SELECT agent_enabled, status = 'open' AS is_open
  FROM conversations
 WHERE id = :conversation_id
   FOR UPDATE;
