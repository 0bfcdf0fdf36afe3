-- name: store_result(caller, action, key, result)!
-- Keeps the claimed write's result beside its key, in the write's own transaction.
UPDATE idempotency_keys SET result = :result
 WHERE caller = :caller AND action = :action AND key = :key;
