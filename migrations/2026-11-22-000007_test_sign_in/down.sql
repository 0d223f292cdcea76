ALTER TABLE oidc_requests DROP COLUMN purpose;
ALTER TABLE saml_requests DROP COLUMN purpose;
