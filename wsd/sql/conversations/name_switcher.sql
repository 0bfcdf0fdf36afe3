-- name: name_switcher(actor, actor_role, reason)^
-- Names who switches the agent in this transaction, and why (wsd.actor, wsd.actor_role,
-- wsd.reason, local to the transaction): what agent_status_changes' trigger records. Returns
-- {actor}.
SELECT set_config('wsd.actor', :actor, true) AS actor,
       set_config('wsd.actor_role', coalesce(:actor_role, ''), true) AS actor_role,
       set_config('wsd.reason', coalesce(:reason, ''), true) AS reason;
