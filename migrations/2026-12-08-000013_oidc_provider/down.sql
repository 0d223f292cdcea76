DROP TABLE oidc_logouts;
DROP TABLE oidc_refresh_tokens;
DROP TABLE oidc_codes;
DROP TABLE oidc_grants;
DROP TABLE oidc_auth_requests;
