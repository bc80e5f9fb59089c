-- A link code links any Telegram group to the account, so it is kept like a
-- password: link_code_hash (SHA-256, hex) is what /link and /start look up,
-- link_code_enc is the code sealed with ENCRYPTION_KEY, for the admin's
-- settings page and the install page. SQL cannot seal, so this migration only
-- renames the column and adds the sealed one; the rows it leaves with an
-- empty link_code_enc still hold the plain code in link_code_hash, and
-- store.DB.Migrate rewrites them (hash and seal) right after, before the
-- process serves anything. The rename keeps the UNIQUE constraint, which
-- SQLite could not add to a new column.

-- +goose Up
ALTER TABLE accounts RENAME COLUMN link_code TO link_code_hash;
ALTER TABLE accounts ADD COLUMN link_code_enc TEXT NOT NULL DEFAULT '';

-- +goose Down
-- The plain codes cannot be recovered from their hashes: after a rollback the
-- accounts' groups stay linked, but new groups need a code re-issued.
ALTER TABLE accounts DROP COLUMN link_code_enc;
ALTER TABLE accounts RENAME COLUMN link_code_hash TO link_code;
