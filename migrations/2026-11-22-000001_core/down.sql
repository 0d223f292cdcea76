DROP TABLE sessions;
DROP TABLE instance_admins;
DROP TABLE audit_events;
DROP TABLE memberships;
DROP TABLE user_groups;
DROP TABLE users;
DROP TABLE domains;
DROP TABLE organizations;
