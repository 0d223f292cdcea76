-- gatehouse as an OpenID Provider (issue 19): what the authorization, token and logout
-- endpoints keep. Codes, refresh tokens and request ids are random (256 bits) and kept only as
-- SHA-256 hashes.

-- An authorization request waiting for the browser to sign in (`/sso/oauth2/authorize` sends
-- it to the sign-in with `/sso/oauth2/continue/{id}` as the place to come back to).
CREATE TABLE oidc_auth_requests (
    id_hash TEXT PRIMARY KEY NOT NULL,
    app_id TEXT NOT NULL REFERENCES oidc_apps (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,
    nonce TEXT,
    code_challenge TEXT,
    -- The sign-in must be newer than this (prompt=login, max_age), NULL: any live session.
    fresh_after BIGINT,
    -- prompt=login (or max_age=0): the session the browser had when it asked, which cannot
    -- be the one that answers (times are in seconds; sessions are new at every sign-in).
    stale_session_hash TEXT,
    -- SHA-256 of the browser cookie set at authorize: only that browser may come back.
    browser_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT
);

-- One app's sign-in through one gatehouse session: what its codes, refresh tokens and access
-- tokens hang on. It ends with the session (`ended_at`, seen by the logout sweep) or is revoked
-- (code replay, refresh-token reuse, revocation by the app).
CREATE TABLE oidc_grants (
    id TEXT PRIMARY KEY NOT NULL,
    app_id TEXT NOT NULL REFERENCES oidc_apps (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    session_hash TEXT NOT NULL,
    sid TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    auth_time BIGINT NOT NULL,
    auth_method TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT,
    ended_at BIGINT
);
CREATE INDEX oidc_grants_open ON oidc_grants (created_at) WHERE ended_at IS NULL;
CREATE INDEX oidc_grants_session ON oidc_grants (session_hash);
CREATE INDEX oidc_grants_app ON oidc_grants (app_id, created_at);

CREATE TABLE oidc_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    grant_id TEXT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Rotated at every use; a used one presented again revokes its grant (the whole family).
CREATE TABLE oidc_refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    grant_id TEXT NOT NULL REFERENCES oidc_grants (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX oidc_refresh_tokens_grant ON oidc_refresh_tokens (grant_id);

-- Back-channel logout deliveries: one per app, ended session and sid, retried with back-off.
CREATE TABLE oidc_logouts (
    id TEXT PRIMARY KEY NOT NULL,
    app_id TEXT NOT NULL REFERENCES oidc_apps (id) ON DELETE CASCADE,
    session_hash TEXT NOT NULL,
    sid TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    -- Why the session ended, in words (for the audit of each attempt).
    cause TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    sent_at BIGINT,
    gave_up_at BIGINT,
    last_error TEXT,
    -- A grant keeps its sid when it moves to the user's new session: one logout per sid.
    UNIQUE (app_id, session_hash, sid)
);
CREATE INDEX oidc_logouts_due ON oidc_logouts (next_attempt_at) WHERE sent_at IS NULL AND gave_up_at IS NULL;
