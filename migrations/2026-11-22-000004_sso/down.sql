DROP TABLE sso_handoffs;
ALTER TABLE users DROP COLUMN idp_groups;
DROP TABLE user_identities;
DROP TABLE saml_replay;
DROP TABLE saml_requests;
DROP TABLE connections;
