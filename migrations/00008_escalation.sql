-- The escalation ladder of an order nobody takes (issue #13): per-pipeline
-- step times, the order's timers (each step's due time and whether it
-- happened), and the order's posts besides the one on the order row (a
-- bump's new post, the fallback chat's post).

-- +goose Up
ALTER TABLE dispatch_rules ADD COLUMN bump_after_min INTEGER NOT NULL DEFAULT 15;     -- 0: off
ALTER TABLE dispatch_rules ADD COLUMN fallback_after_min INTEGER NOT NULL DEFAULT 0;  -- 0: off
ALTER TABLE dispatch_rules ADD COLUMN fallback_chat_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dispatch_rules ADD COLUMN task_after_min INTEGER NOT NULL DEFAULT 60;     -- 0: off
ALTER TABLE dispatch_rules ADD COLUMN expire_after_h INTEGER NOT NULL DEFAULT 0;      -- 0: off

-- One row per scheduled step of an order, planned when the order opens. A
-- step happens once: the worker's conditional UPDATE of done_at (with the
-- order still open) is the gate, across retries, restarts and replicas.
CREATE TABLE order_timers (
    order_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,                      -- bump | fallback | task | expire
    account_id  BIGINT NOT NULL,
    due_at      TIMESTAMP NOT NULL,
    done_at     TIMESTAMP NULL,
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX order_timers_account ON order_timers (account_id, order_id);

-- Posts of an order other than orders.message_id: a bump's post (which then
-- becomes orders.message_id; replaced_message_id is the post it retires) and
-- the fallback chat's post. message_id is 0 until Telegram answered.
CREATE TABLE order_posts (
    id                   TEXT PRIMARY KEY,
    account_id           BIGINT NOT NULL,
    order_id             TEXT NOT NULL,
    kind                 TEXT NOT NULL,             -- bump | fallback
    chat_id              BIGINT NOT NULL,
    message_id           BIGINT NOT NULL DEFAULT 0,
    replaced_message_id  BIGINT NOT NULL DEFAULT 0,
    state                TEXT NOT NULL,             -- sending | live | stray | cancelled
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX order_posts_once ON order_posts (order_id, kind);
CREATE INDEX order_posts_chat ON order_posts (chat_id, order_id);

-- +goose Down
DROP TABLE order_posts;
DROP TABLE order_timers;
ALTER TABLE dispatch_rules DROP COLUMN expire_after_h;
ALTER TABLE dispatch_rules DROP COLUMN task_after_min;
ALTER TABLE dispatch_rules DROP COLUMN fallback_chat_id;
ALTER TABLE dispatch_rules DROP COLUMN fallback_after_min;
ALTER TABLE dispatch_rules DROP COLUMN bump_after_min;
