-- When a taken order's write-back to amoCRM finished, so that work a job
-- could not finish (account revoked, an outage longer than its retries) is
-- found and done again by the reconciler.

-- +goose Up
ALTER TABLE orders ADD COLUMN lead_updated_at TIMESTAMP NULL;
ALTER TABLE orders ADD COLUMN noted_at TIMESTAMP NULL;
-- Orders taken before this migration are taken as written back.
UPDATE orders SET lead_updated_at = taken_at, noted_at = taken_at WHERE status = 'taken';
CREATE INDEX orders_unfinished ON orders (account_id, status);

-- +goose Down
DROP INDEX orders_unfinished;
ALTER TABLE orders DROP COLUMN noted_at;
ALTER TABLE orders DROP COLUMN lead_updated_at;
