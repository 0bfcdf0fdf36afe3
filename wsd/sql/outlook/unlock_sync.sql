-- name: unlock_sync(mailbox)$
-- Releases the mailbox's sync lock taken by lock_sync on this connection; returns whether it was held.
SELECT pg_advisory_unlock(hashtext('outlook-sync'), hashtext(:mailbox));
