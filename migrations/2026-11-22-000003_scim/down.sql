DROP INDEX memberships_group_created;
DROP INDEX user_groups_org_created;
DROP INDEX users_org_updated;
DROP TABLE user_attrs;
ALTER TABLE memberships DROP COLUMN display;
ALTER TABLE user_groups DROP COLUMN scim_json;
ALTER TABLE users DROP COLUMN scim_json;
