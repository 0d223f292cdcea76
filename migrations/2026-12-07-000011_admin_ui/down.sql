ALTER TABLE organizations DROP COLUMN group_source;
ALTER TABLE domains DROP COLUMN verified_by;
ALTER TABLE domains DROP COLUMN check_result;
ALTER TABLE domains DROP COLUMN checked_at;
ALTER TABLE domains DROP COLUMN dns_token;
DROP TABLE admin_form_submissions;
DROP TABLE connection_tests;
ALTER TABLE connections DROP COLUMN tested_at;
ALTER TABLE connections DROP COLUMN draft;
