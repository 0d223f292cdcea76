-- Apps that sign users in with OpenID Connect, gatehouse being their OpenID Provider
-- (issue 19). The client secret is kept as its SHA-256 (256 random bits: no dictionary to
-- try); after a rotation the previous one stays valid until `previous_secret_until`.
-- `redirect_uris` and `post_logout_redirect_uris`: JSON arrays of exact URIs. `orgs`: NULL
-- for every org, else a JSON array of org ids.
CREATE TABLE oidc_apps (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    client_id TEXT NOT NULL UNIQUE,
    public BOOLEAN NOT NULL,
    secret_hash TEXT,
    previous_secret_hash TEXT,
    previous_secret_until BIGINT,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    backchannel_logout_uri TEXT,
    orgs TEXT,
    id_token_alg TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
