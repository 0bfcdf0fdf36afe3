-- name: lock_mailbox(mailbox)$
-- Serializes meeting writes of one mailbox until the transaction ends, so two requests
-- cannot both see a free slot and book it twice.
SELECT pg_advisory_xact_lock(hashtextextended('wsd-mailbox:' || :mailbox::text, 0));
