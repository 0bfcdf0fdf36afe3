-- 0018: the person behind a trail entry. A person signed in with OpenID Connect (wsd/oidc.py)
-- is the entry's actor as "<provider>:<subject>" (stable: a display name or an email can
-- change); actor_name and actor_email are what the provider's token said at the time, so the
-- trail names who it was. Both are NULL for an API token (a program, wsd-cli).

ALTER TABLE trail_entries
    ADD COLUMN actor_name  text,
    ADD COLUMN actor_email text;
