-- "Test sign-in" from the admin UI: a request marked `test` is validated in full, shows what
-- the IdP sent, and signs nobody in.
ALTER TABLE saml_requests ADD COLUMN purpose TEXT;
ALTER TABLE oidc_requests ADD COLUMN purpose TEXT;
