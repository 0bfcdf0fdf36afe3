-- name: lock_sync(mailbox)$
-- Waits for the mailbox's sync lock (session-level): one delta round at a time across every
-- worker and instance. Returns nothing useful.
SELECT pg_advisory_lock(hashtext('outlook-sync'), hashtext(:mailbox))::text;
