-- SSO connections (SAML now, OIDC later), the SAML requests we issued, the assertion replay
-- cache, and the link between an IdP subject and a user.

CREATE TABLE connections (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- Protocol settings as JSON (no secrets).
    config TEXT NOT NULL,
    -- A sealed secret (OIDC client secret), when the protocol has one.
    secret_enc TEXT,
    last_success_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX connections_org ON connections (org_id);

CREATE TABLE saml_requests (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    return_to TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX saml_requests_expires ON saml_requests (expires_at);

CREATE TABLE saml_replay (
    connection_id TEXT NOT NULL,
    assertion_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, assertion_id)
);
CREATE INDEX saml_replay_expires ON saml_replay (expires_at);

CREATE TABLE user_identities (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- Groups from the latest assertion / ID token (used where the org has no SCIM groups).
ALTER TABLE users ADD COLUMN idp_groups TEXT;

-- A verified sign-in waiting to become a session: the ACS (a cross-site POST, which carries no
-- Lax cookie) hands over to a same-site page that can see the browser's current session.
CREATE TABLE sso_handoffs (
    id_hash TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    return_to TEXT,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT
);
