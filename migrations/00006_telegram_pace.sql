-- The bot's recent sends and Telegram's 429 holds, so that the pace survives
-- a restart and replicas keep to one budget: at most 20 messages a minute
-- per group, about one a second per chat and 30 a second in all. Times are
-- Unix nanoseconds. Rows older than a couple of minutes are pruned.

-- +goose Up
CREATE TABLE tg_sends (
    chat_id BIGINT NOT NULL,
    sent_at BIGINT NOT NULL
);
CREATE INDEX tg_sends_chat ON tg_sends (chat_id, sent_at);
CREATE INDEX tg_sends_at ON tg_sends (sent_at);
CREATE TABLE tg_holds (
    scope      BIGINT PRIMARY KEY, -- a chat id; 0 holds every chat
    held_until BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tg_holds;
DROP TABLE tg_sends;
