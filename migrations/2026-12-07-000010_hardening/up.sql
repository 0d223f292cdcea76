-- Security hardening (issue 17).
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
-- A secret shown once in the admin UI (a new SCIM token, break-glass credentials), sealed,
-- for the one GET that follows the POST (POST/redirect/GET: a reload cannot mint another).
CREATE TABLE admin_once_results (
    id TEXT PRIMARY KEY NOT NULL,
    session_hash TEXT NOT NULL,
    sealed TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX admin_once_results_expires ON admin_once_results (expires_at);
