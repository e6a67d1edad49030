-- Optional short queue for concurrency limits (docs/rate-limits.md): the
-- longest a call over `max_concurrent` waits for a slot, and how many calls
-- may wait at once (per limiter, per data plane). 0: no queue.
ALTER TABLE rate_limit_tiers ADD COLUMN queue_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rate_limit_tiers ADD COLUMN queue_depth BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rate_limits ADD COLUMN queue_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rate_limits ADD COLUMN queue_depth BIGINT NOT NULL DEFAULT 0;
