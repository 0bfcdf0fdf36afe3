-- name: stored_result(caller, action, key)^
-- The committed write that claimed a key: {payload_sha256, result}.
SELECT payload_sha256, result FROM idempotency_keys
 WHERE caller = :caller AND action = :action AND key = :key;
