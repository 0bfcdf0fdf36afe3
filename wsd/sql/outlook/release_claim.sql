-- name: release_claim(meeting_id)!
-- Lets go of a meeting whose push was interrupted (shutdown), so the next pusher need not
-- wait for the lease to lapse.
UPDATE meetings SET sync_claimed_until = NULL WHERE id = :meeting_id;
