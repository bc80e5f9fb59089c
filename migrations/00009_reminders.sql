-- Reminders before the job time (issue #13, second half): a pipeline's
-- job-time field and reminder offsets, and per taken order one live plan
-- (the job time it was made for, the executor's confirmation) with its
-- steps (each reminder, and the check for a missing confirmation).

-- +goose Up
ALTER TABLE dispatch_rules ADD COLUMN job_time_field_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE dispatch_rules ADD COLUMN reminder_offsets TEXT NOT NULL DEFAULT ''; -- JSON array of minutes; '' = the defaults

-- One plan per job time an order was given; a moved job time cancels the
-- plan and makes a new one, so at most one plan of an order is live.
CREATE TABLE reminder_plans (
    id            TEXT PRIMARY KEY,
    account_id    BIGINT NOT NULL,
    order_id      TEXT NOT NULL,
    lead_id       BIGINT NOT NULL,
    job_at        TIMESTAMP NOT NULL,
    time_zone     TEXT NOT NULL DEFAULT '',
    date_only     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMP NOT NULL,
    confirmed_at  TIMESTAMP NULL,
    cancelled_at  TIMESTAMP NULL
);
CREATE UNIQUE INDEX reminder_plans_live ON reminder_plans (order_id) WHERE cancelled_at IS NULL;
CREATE INDEX reminder_plans_account ON reminder_plans (account_id, lead_id);

-- A plan's steps: kind 'remind' (offset_min before the job time) or 'check'
-- (the missing confirmation). done_at is the "once": a step is done once.
CREATE TABLE reminder_steps (
    plan_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    offset_min   INTEGER NOT NULL,
    account_id   BIGINT NOT NULL,
    order_id     TEXT NOT NULL,
    due_at       TIMESTAMP NOT NULL,
    done_at      TIMESTAMP NULL,
    message_id   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (plan_id, kind, offset_min)
);
CREATE INDEX reminder_steps_order ON reminder_steps (order_id, due_at);

-- +goose Down
DROP INDEX reminder_steps_order;
DROP TABLE reminder_steps;
DROP INDEX reminder_plans_account;
DROP INDEX reminder_plans_live;
DROP TABLE reminder_plans;
ALTER TABLE dispatch_rules DROP COLUMN reminder_offsets;
ALTER TABLE dispatch_rules DROP COLUMN job_time_field_id;
