-- name: new_lead(full_name, email, phone, company)^
-- Creates a prospect: the user, an open conversation with the agent on, and a lead at
-- `start` linked to both. Returns {lead_id, conversation_id}.
WITH new_user AS (
    INSERT INTO users (full_name, email, phone, company)
    VALUES (:full_name, :email, :phone, :company)
    RETURNING id
), new_conversation AS (
    INSERT INTO conversations (user_id)
    SELECT id FROM new_user
    RETURNING id, user_id
)
INSERT INTO lead_qualifications (user_id, conversation_id)
SELECT user_id, id FROM new_conversation
RETURNING id AS lead_id, conversation_id;
