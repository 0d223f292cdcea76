-- SCIM at 100,000 users: `GET /Users` filters on (org_id, is_break_glass) and pages in
-- (created_at, id) order. With this index both the exact COUNT(*) and the OFFSET skip run on
-- the index alone, never touching the rows (which hold whole SCIM documents).
CREATE INDEX users_scim_page ON users (org_id, is_break_glass, created_at, id);

-- The exact number of SCIM-visible users (not break-glass) per org, for `totalResults` of an
-- unfiltered `GET /Users` without counting 100,000 index entries per page. Kept by triggers
-- that `Db::migrate` installs for the backend in use, and recounted there at every start.
CREATE TABLE scim_user_counts (
    org_id TEXT PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    n BIGINT NOT NULL
);
