-- Order statistics for the widget (issue #15): the moment an order's post
-- went out, recorded by the same UPDATE that marks it open (or by the take,
-- when a press proved the post first), and an index so that an account's
-- figures for a period are read from its own rows only (the timeline's steps
-- of those orders are found through order_events_once).

-- +goose Up
ALTER TABLE orders ADD COLUMN posted_at TIMESTAMP NULL;
-- Orders posted before this migration: the timeline's "posted" step, or the
-- take for a post only a press proved; an order that never left "posting"
-- or "failed" and has no such step was never posted.
UPDATE orders SET posted_at = (SELECT MIN(e.at) FROM order_events e WHERE e.order_id = orders.id AND e.kind = 'posted');
UPDATE orders SET posted_at = taken_at WHERE posted_at IS NULL AND taken_at IS NOT NULL;
UPDATE orders SET posted_at = created_at WHERE posted_at IS NULL AND message_id <> 0;
CREATE INDEX orders_stats ON orders (account_id, posted_at);
-- An executor's latest step (their last activity).
CREATE INDEX order_events_actor ON order_events (account_id, telegram_id, at);
-- The optional weekly digest: the chat it goes to (0: none), and one row per
-- account and week, written with the job that sends it, so one is sent
-- whichever replica's hourly check sees Monday morning first.
ALTER TABLE account_settings ADD COLUMN digest_chat_id BIGINT NOT NULL DEFAULT 0;
CREATE TABLE stats_digests (
    account_id  BIGINT NOT NULL,
    week        TEXT NOT NULL,     -- the Monday it is sent, YYYY-MM-DD in the account's zone
    chat_id     BIGINT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    sent_at     TIMESTAMP NULL,
    PRIMARY KEY (account_id, week)
);

-- +goose Down
DROP TABLE stats_digests;
ALTER TABLE account_settings DROP COLUMN digest_chat_id;
DROP INDEX order_events_actor;
DROP INDEX orders_stats;
ALTER TABLE orders DROP COLUMN posted_at;
