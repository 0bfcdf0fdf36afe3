-- name: lock_lead_of_conversation(conversation_id)^
-- Returns {lead_id, user_id, current_step, full_name, email, company} of the conversation's
-- newest lead, the lead locked until the transaction ends; no row when it has none.
SELECT l.id AS lead_id, l.user_id, l.current_step::text AS current_step,
       u.full_name, u.email, u.company
  FROM lead_qualifications AS l
  JOIN users AS u ON u.id = l.user_id
 WHERE l.conversation_id = :conversation_id
 ORDER BY l.created_at DESC, l.id DESC
 LIMIT 1
   FOR UPDATE OF l;
