ALTER TABLE scim_user_counts DROP COLUMN generation;
