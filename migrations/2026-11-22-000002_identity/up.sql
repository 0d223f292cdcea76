-- Identity core: roles and group→role mappings, tombstones, SCIM tokens, signing keys.

CREATE TABLE roles (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    name_folded TEXT NOT NULL,
    rank INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_org_name ON roles (org_id, name_folded);

-- A group matches by its displayName or by the IdP's value for it (Entra sends object ids).
CREATE TABLE role_mappings (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    group_key_folded TEXT NOT NULL,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX role_mappings_org_group ON role_mappings (org_id, group_key_folded);

-- Identities deleted by SCIM: JIT must not silently recreate them.
CREATE TABLE tombstones (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_name_folded TEXT NOT NULL,
    email_folded TEXT,
    external_id TEXT,
    deleted_user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tombstones_org_user_name ON tombstones (org_id, user_name_folded);
CREATE INDEX tombstones_org_email ON tombstones (org_id, email_folded);

CREATE TABLE scim_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX scim_tokens_org ON scim_tokens (org_id);

-- Instance-wide keys: the SAML SP signing key + certificate and the identity-JWT key. Private
-- keys are sealed with the instance secret key. A retired key is still published until
-- `publish_until`.
CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key_enc TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    certificate_pem TEXT,
    created_at BIGINT NOT NULL,
    not_after BIGINT,
    retired_at BIGINT,
    publish_until BIGINT
);
CREATE INDEX signing_keys_purpose ON signing_keys (purpose, created_at);
