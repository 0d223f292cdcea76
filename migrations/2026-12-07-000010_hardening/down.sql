ALTER TABLE user_identities DROP COLUMN explicit;
ALTER TABLE oidc_requests DROP COLUMN test_session;
ALTER TABLE saml_requests DROP COLUMN test_session;
DROP INDEX sessions_connection;
ALTER TABLE sessions DROP COLUMN connection_id;
DROP INDEX users_org_break_glass_name;
DROP INDEX users_org_user_name;
CREATE UNIQUE INDEX users_org_user_name ON users (org_id, user_name_folded);
