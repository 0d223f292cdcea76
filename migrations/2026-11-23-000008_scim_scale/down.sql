DROP TABLE scim_user_counts;
DROP INDEX users_scim_page;
