-- Core tables. One migration set for SQLite and PostgreSQL: TEXT ids (UUIDs made in Rust),
-- BIGINT Unix seconds for times, BOOLEAN, no SERIAL/AUTOINCREMENT. Case folding for unique
-- names is done in Rust (the *_folded columns) so both backends agree.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    enforcement TEXT NOT NULL DEFAULT 'off',
    jit_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    default_role TEXT,
    session_idle_minutes INTEGER NOT NULL DEFAULT 480,
    session_max_minutes INTEGER NOT NULL DEFAULT 10080,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE domains (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    domain TEXT NOT NULL UNIQUE,
    verified BOOLEAN NOT NULL DEFAULT FALSE,
    enforce BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX domains_org ON domains (org_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    user_name_folded TEXT NOT NULL,
    external_id TEXT,
    email TEXT,
    email_folded TEXT,
    given_name TEXT,
    family_name TEXT,
    display_name TEXT,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    app_role TEXT,
    is_org_admin BOOLEAN NOT NULL DEFAULT FALSE,
    is_break_glass BOOLEAN NOT NULL DEFAULT FALSE,
    source TEXT NOT NULL,
    password_hash TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_org_user_name ON users (org_id, user_name_folded);
CREATE INDEX users_org_external_id ON users (org_id, external_id);
CREATE INDEX users_org_email ON users (org_id, email_folded);
CREATE INDEX users_org_created ON users (org_id, created_at, id);

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    display_name_folded TEXT NOT NULL,
    external_id TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX user_groups_org_display_name ON user_groups (org_id, display_name_folded);
CREATE INDEX user_groups_org_external_id ON user_groups (org_id, external_id);

CREATE TABLE memberships (
    group_id TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Hash-chained per chain: `chain` is the org id, or 'instance' for instance-level events.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    chain TEXT NOT NULL,
    org_id TEXT,
    seq BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    payload TEXT,
    -- The chain covers the payload's hash, so purging old payloads keeps the chain intact.
    payload_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_events_chain_seq ON audit_events (chain, seq);
CREATE INDEX audit_events_org_time ON audit_events (org_id, occurred_at);

CREATE TABLE instance_admins (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    email_folded TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret_enc TEXT NOT NULL,
    totp_last_step BIGINT,
    created_at BIGINT NOT NULL
);

-- Server-side sessions: the cookie carries a random id, the table its SHA-256.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    org_id TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    admin_id TEXT REFERENCES instance_admins (id) ON DELETE CASCADE,
    auth_method TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_timeout_secs BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_admin ON sessions (admin_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
