-- OpenID Connect sign-ins in flight: one row per authorization request, found by the hash of
-- its `state`, bound to the browser that started it, accepted once.
CREATE TABLE oidc_requests (
    state_hash TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- SHA-256 of the random value in this browser's cookie.
    browser_hash TEXT NOT NULL,
    -- Nonce and PKCE verifier, sealed with the instance key.
    nonce_enc TEXT NOT NULL,
    verifier_enc TEXT NOT NULL,
    return_to TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX oidc_requests_expires ON oidc_requests (expires_at);
