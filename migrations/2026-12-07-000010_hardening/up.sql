-- Security hardening (issue 17).
-- Break-glass accounts are not directory users: they leave SCIM's userName uniqueness space.
-- A SCIM user may carry the same userName as a break-glass account of its org; break-glass
-- accounts stay unique among themselves.
DROP INDEX users_org_user_name;
CREATE UNIQUE INDEX users_org_user_name ON users (org_id, user_name_folded) WHERE is_break_glass = FALSE;
CREATE UNIQUE INDEX users_org_break_glass_name ON users (org_id, user_name_folded) WHERE is_break_glass = TRUE;
-- The connection whose sign-in created a session: disabling or deleting the connection ends
-- the sessions it created.
ALTER TABLE sessions ADD COLUMN connection_id TEXT;
CREATE INDEX sessions_connection ON sessions (connection_id);
-- A test sign-in belongs to the admin session that started it (its id hash).
ALTER TABLE saml_requests ADD COLUMN test_session TEXT;
ALTER TABLE oidc_requests ADD COLUMN test_session TEXT;
-- Links an admin made explicitly (`gatehouse user link`). An org admin signs in with SSO only
-- through such a link: links made by e-mail before this version (one could have been planted
-- by renaming the admin through SCIM) no longer open an org admin's account.
ALTER TABLE user_identities ADD COLUMN explicit BOOLEAN NOT NULL DEFAULT FALSE;
