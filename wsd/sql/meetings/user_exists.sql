-- name: user_exists(user_id)$
-- Returns whether the user exists.
SELECT EXISTS (SELECT 1 FROM users WHERE id = :user_id);
