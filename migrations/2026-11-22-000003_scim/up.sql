-- SCIM: the resource documents as the IdP sent them (minus passwords and server-managed
-- attributes), and a side table of every attribute value so filters on any attribute run in
-- SQL on an index instead of scanning users in memory.

ALTER TABLE users ADD COLUMN scim_json TEXT;
ALTER TABLE user_groups ADD COLUMN scim_json TEXT;
-- The member `display` a client sent, echoed back (else the user's userName is shown).
ALTER TABLE memberships ADD COLUMN display TEXT;

-- One row per simple value: `path` is lower-case (`emails.value`, `name.givenname`,
-- `urn:…:enterprise:2.0:user:employeenumber`), `root` its top attribute, `ekey` identifies
-- the element of a multi-valued attribute (so `emails[type eq "work" and value eq "x"]`
-- matches within one element).
CREATE TABLE user_attrs (
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    root TEXT NOT NULL,
    path TEXT NOT NULL,
    ekey TEXT NOT NULL,
    value TEXT NOT NULL,
    value_folded TEXT NOT NULL
);
CREATE INDEX user_attrs_lookup ON user_attrs (org_id, path, value_folded);
CREATE INDEX user_attrs_user ON user_attrs (user_id);
CREATE INDEX user_attrs_ekey ON user_attrs (ekey);

CREATE INDEX users_org_updated ON users (org_id, updated_at, id);
CREATE INDEX user_groups_org_created ON user_groups (org_id, created_at, id);
CREATE INDEX memberships_group_created ON memberships (group_id, created_at, user_id);
