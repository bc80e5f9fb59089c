-- The dispatch flow: per-account settings, orders, contact reveals.

-- +goose Up
ALTER TABLE accounts ADD COLUMN currency TEXT NOT NULL DEFAULT 'RUB';

CREATE TABLE account_settings (
    account_id       BIGINT PRIMARY KEY,
    language         TEXT NOT NULL DEFAULT '',       -- '' = the account's amoCRM language
    order_field_ids  TEXT NOT NULL DEFAULT '',       -- JSON array; '' = every non-empty field
    show_budget      BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at       TIMESTAMP NOT NULL
);

-- What "searching for an executor" means in one pipeline, and where a taken
-- deal goes next.
CREATE TABLE dispatch_rules (
    account_id        BIGINT NOT NULL,
    pipeline_id       BIGINT NOT NULL,
    trigger_stage_ids TEXT NOT NULL DEFAULT '[]',     -- JSON array of stage ids
    found_stage_id    BIGINT NOT NULL DEFAULT 0,      -- 0 = leave the stage alone
    default_chat_id   BIGINT NOT NULL DEFAULT 0,
    updated_at        TIMESTAMP NOT NULL,
    PRIMARY KEY (account_id, pipeline_id)
);

-- Telegram executor → amoCRM user, for responsible_user_id.
CREATE TABLE executor_users (
    account_id   BIGINT NOT NULL,
    telegram_id  BIGINT NOT NULL,
    amo_user_id  BIGINT NOT NULL,
    PRIMARY KEY (account_id, telegram_id)
);

-- A deal's own target chat, chosen in the deal card; wins over the default.
CREATE TABLE deal_targets (
    account_id  BIGINT NOT NULL,
    lead_id     BIGINT NOT NULL,
    chat_id     BIGINT NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (account_id, lead_id)
);

CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    account_id         BIGINT NOT NULL,
    lead_id            BIGINT NOT NULL,
    pipeline_id        BIGINT NOT NULL,
    stage_id           BIGINT NOT NULL,
    chat_id            BIGINT NOT NULL,
    message_id         BIGINT NOT NULL DEFAULT 0,
    status             TEXT NOT NULL,                 -- posting | open | taken | withdrawn | failed
    active             BOOLEAN NOT NULL,              -- the deal's current round
    group_text         TEXT NOT NULL DEFAULT '',      -- the rendered post, reused by edits
    executor_id        BIGINT NOT NULL DEFAULT 0,
    executor_name      TEXT NOT NULL DEFAULT '',
    executor_username  TEXT NOT NULL DEFAULT '',
    taken_at           TIMESTAMP NULL,
    fail_reason        TEXT NOT NULL DEFAULT '',
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL
);
-- At most one current order per deal: a duplicate webhook or a reconciler
-- pass racing a webhook cannot post a second one.
CREATE UNIQUE INDEX orders_one_active ON orders (account_id, lead_id) WHERE active;
CREATE INDEX orders_chat ON orders (chat_id, message_id);

CREATE TABLE contact_reveals (
    id           TEXT PRIMARY KEY,                    -- also the /start token
    account_id   BIGINT NOT NULL,
    order_id     TEXT NOT NULL,
    telegram_id  BIGINT NOT NULL,
    kind         TEXT NOT NULL,                       -- request (button) | winner (took the order)
    requested_at TIMESTAMP NOT NULL,
    sent_at      TIMESTAMP NULL
);
-- One reveal per user, order and kind: pressing again reuses it.
CREATE UNIQUE INDEX contact_reveals_once ON contact_reveals (order_id, telegram_id, kind);

-- +goose Down
DROP TABLE contact_reveals;
DROP TABLE orders;
DROP TABLE deal_targets;
DROP TABLE executor_users;
DROP TABLE dispatch_rules;
DROP TABLE account_settings;
ALTER TABLE accounts DROP COLUMN currency;
