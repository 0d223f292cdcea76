-- Deep pages of `GET /Users` seek to a remembered position ("anchor": the key of every
-- 1,000th user in (created_at, id) order) instead of walking the index from the start. The
-- anchors of an org stay valid while no user is removed from or inserted before them; the
-- triggers that keep `n` (installed by `Db::migrate`) bump `generation` whenever that may have
-- happened, and a reader whose anchors carry another generation finds them again.
ALTER TABLE scim_user_counts ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
