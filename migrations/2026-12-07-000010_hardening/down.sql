DROP TABLE admin_once_results;
ALTER TABLE user_identities DROP COLUMN explicit;
ALTER TABLE oidc_requests DROP COLUMN test_session;
ALTER TABLE saml_requests DROP COLUMN test_session;
DROP INDEX sessions_connection;
ALTER TABLE sessions DROP COLUMN connection_id;
