DROP TABLE signing_keys;
DROP TABLE scim_tokens;
DROP TABLE tombstones;
DROP TABLE role_mappings;
DROP TABLE roles;
