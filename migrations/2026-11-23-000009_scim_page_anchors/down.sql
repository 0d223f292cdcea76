-- The count triggers that `Db::migrate` installs name this column: on SQLite drop them first
-- (`DROP TRIGGER users_count_insert` / `_delete` / `_update`); the older gatehouse that runs
-- after the downgrade installs its own again at start.
ALTER TABLE scim_user_counts DROP COLUMN generation;
