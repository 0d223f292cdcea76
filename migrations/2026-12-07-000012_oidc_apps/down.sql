DROP TABLE oidc_apps;
