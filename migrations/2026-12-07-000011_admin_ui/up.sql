-- The admin UI an IT admin cannot break by accident (issue 18).
-- A draft connection is offered to nobody: only its admins' Test sign-in uses it until it is
-- activated. `tested_at`: the last successful Test sign-in (tests never set last_success_at).
ALTER TABLE connections ADD COLUMN draft BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE connections ADD COLUMN tested_at BIGINT;
-- Test sign-in results, success or failure, shown on the connection's page (a few kept).
CREATE TABLE connection_tests (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    cause TEXT,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX connection_tests_connection ON connection_tests (connection_id, created_at);
-- A form submitted once: a second submit of the same form (double click, reload of the POST)
-- goes where the first went instead of doing it again.
CREATE TABLE admin_form_submissions (
    form_id TEXT PRIMARY KEY NOT NULL,
    session_hash TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX admin_form_submissions_created ON admin_form_submissions (created_at);
-- Domain verification by a DNS TXT record: the token to publish, and the last check.
ALTER TABLE domains ADD COLUMN dns_token TEXT;
ALTER TABLE domains ADD COLUMN checked_at BIGINT;
ALTER TABLE domains ADD COLUMN check_result TEXT;
ALTER TABLE domains ADD COLUMN verified_by TEXT;
-- Which groups count for app roles: 'auto' (SCIM groups once the org has any, else the
-- groups of the latest sign-in), 'idp' (sign-in groups only), 'scim' (SCIM groups only) or
-- 'both' (the union).
ALTER TABLE organizations ADD COLUMN group_source TEXT NOT NULL DEFAULT 'auto';
-- Setup links: a customer's IT admin, who has no account, sets up SSO, SCIM or domains for
-- one org through a link (its token stored hashed), time-limited and revocable.
CREATE TABLE setup_links (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    intents TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX setup_links_org ON setup_links (org_id);
-- A session opened through a setup link (no user, no instance admin).
ALTER TABLE sessions ADD COLUMN setup_link_id TEXT;
