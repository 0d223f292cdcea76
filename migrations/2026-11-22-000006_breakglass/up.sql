-- Break-glass accounts sign in with a password and a TOTP code: the seed (sealed with the
-- instance key) and the last accepted time step (each code is accepted once).
ALTER TABLE users ADD COLUMN totp_secret_enc TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
