DROP TABLE oidc_requests;
