-- The schema is written once for PostgreSQL and SQLite: no dialect-only types,
-- no auto-increment (ids are natural keys or UUIDs made by the application),
-- times are TIMESTAMP written in UTC, lease deadlines are unix milliseconds.

-- +goose Up
CREATE TABLE accounts (
    id                  BIGINT PRIMARY KEY,          -- amoCRM account id
    subdomain           TEXT NOT NULL,
    domain              TEXT NOT NULL,               -- API host, e.g. example.amocrm.ru
    name                TEXT NOT NULL DEFAULT '',
    language            TEXT NOT NULL DEFAULT 'ru',
    status              TEXT NOT NULL,               -- active | disabled | revoked
    link_code           TEXT NOT NULL UNIQUE,        -- Telegram startgroup parameter
    webhook_secret_enc  TEXT NOT NULL,
    access_token_enc    TEXT NOT NULL DEFAULT '',
    refresh_token_enc   TEXT NOT NULL DEFAULT '',
    token_expires_at    BIGINT NOT NULL DEFAULT 0,   -- unix ms
    refresh_lock_owner  TEXT NOT NULL DEFAULT '',
    refresh_lock_until  BIGINT NOT NULL DEFAULT 0,   -- unix ms
    executor_field_id   BIGINT NOT NULL DEFAULT 0,
    setup_done_at       TIMESTAMP NULL,
    setup_error         TEXT NOT NULL DEFAULT '',
    installed_at        TIMESTAMP NOT NULL,
    disabled_at         TIMESTAMP NULL,
    updated_at          TIMESTAMP NOT NULL
);

-- Pipelines and stages as last read from amoCRM, so settings can be validated
-- and shown without an API call.
CREATE TABLE pipelines (
    account_id  BIGINT NOT NULL,
    id          BIGINT NOT NULL,
    name        TEXT NOT NULL,
    sort        INTEGER NOT NULL DEFAULT 0,
    is_main     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE stages (
    account_id  BIGINT NOT NULL,
    pipeline_id BIGINT NOT NULL,
    id          BIGINT NOT NULL,
    name        TEXT NOT NULL,
    sort        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, pipeline_id, id)
);

CREATE TABLE chats (
    id          BIGINT PRIMARY KEY,                  -- Telegram chat id
    account_id  BIGINT NOT NULL,
    title       TEXT NOT NULL DEFAULT '',
    type        TEXT NOT NULL DEFAULT '',
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    linked_by   BIGINT NOT NULL DEFAULT 0,
    linked_at   TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
CREATE INDEX chats_account ON chats (account_id);

CREATE TABLE executors (
    telegram_id   BIGINT PRIMARY KEY,
    first_name    TEXT NOT NULL DEFAULT '',
    last_name     TEXT NOT NULL DEFAULT '',
    username      TEXT NOT NULL DEFAULT '',
    language_code TEXT NOT NULL DEFAULT '',
    started       BOOLEAN NOT NULL DEFAULT FALSE,    -- pressed Start: the bot may write to them
    blocked       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);

-- Every Telegram update is stored before it is acknowledged, then processed.
CREATE TABLE telegram_updates (
    update_id     BIGINT PRIMARY KEY,
    payload       TEXT NOT NULL,
    received_at   TIMESTAMP NOT NULL,
    claimed_by    TEXT NOT NULL DEFAULT '',
    claimed_until BIGINT NOT NULL DEFAULT 0,         -- unix ms
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    processed_at  TIMESTAMP NULL
);
CREATE INDEX telegram_updates_pending ON telegram_updates (processed_at, update_id);

-- Named leases: one holder at a time across processes (Telegram poller, ...).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL                      -- unix ms
);

-- +goose Down
DROP TABLE leases;
DROP TABLE telegram_updates;
DROP TABLE executors;
DROP TABLE chats;
DROP TABLE stages;
DROP TABLE pipelines;
DROP TABLE accounts;
