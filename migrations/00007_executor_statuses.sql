-- The executor's side of an order (issue #12): the private card edited with
-- each status, the responsible user a release restores, per-pipeline status
-- stages and buttons, the contact policy, and the order's timeline.

-- +goose Up
ALTER TABLE orders ADD COLUMN card_message_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN card_text TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN prev_responsible_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dispatch_rules ADD COLUMN status_stages TEXT NOT NULL DEFAULT '';   -- JSON object status → stage id
ALTER TABLE dispatch_rules ADD COLUMN status_buttons TEXT NOT NULL DEFAULT '';  -- JSON array; '' = every button
ALTER TABLE account_settings ADD COLUMN contact_policy TEXT NOT NULL DEFAULT ''; -- '' any member | executor

-- One row per step of an order's timeline; its write-back to amoCRM (the
-- note, the stage move) is recorded on the row, so a retry writes once.
CREATE TABLE order_events (
    id               TEXT PRIMARY KEY,
    account_id       BIGINT NOT NULL,
    order_id         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    telegram_id      BIGINT NOT NULL DEFAULT 0,
    actor            TEXT NOT NULL DEFAULT '',
    at               TIMESTAMP NOT NULL,
    noted_at         TIMESTAMP NULL,
    lead_updated_at  TIMESTAMP NULL
);
CREATE UNIQUE INDEX order_events_once ON order_events (order_id, kind, telegram_id);
CREATE INDEX order_events_account ON order_events (account_id, order_id);
CREATE INDEX orders_executor ON orders (executor_id, status);

-- +goose Down
DROP INDEX orders_executor;
DROP TABLE order_events;
ALTER TABLE account_settings DROP COLUMN contact_policy;
ALTER TABLE dispatch_rules DROP COLUMN status_buttons;
ALTER TABLE dispatch_rules DROP COLUMN status_stages;
ALTER TABLE orders DROP COLUMN prev_responsible_id;
ALTER TABLE orders DROP COLUMN card_text;
ALTER TABLE orders DROP COLUMN card_message_id;
