-- The next free amoCRM request slot of each account, shared by every process
-- on this database, so that replicas together keep to amoCRM's 7 requests a
-- second per account (used on PostgreSQL; a SQLite database has one process).

-- +goose Up
CREATE TABLE amo_rate_limits (
    account_id BIGINT PRIMARY KEY,
    next_at    TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE amo_rate_limits;
