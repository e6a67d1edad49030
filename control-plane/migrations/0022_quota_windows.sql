-- Rate-limit quota ledger shared by every control-plane replica
-- (docs/rate-limits.md, ADR 0022): how much of each (limiter, dimension,
-- window) has been granted to data planes. One row per window in progress;
-- rows past expires_ms are deleted. Survives restarts, so a restarted
-- replica does not grant a window in progress afresh.
CREATE TABLE quota_windows (
    limiter TEXT NOT NULL,
    dimension TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_ms BIGINT NOT NULL,
    granted BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (limiter, dimension, window_start_ms)
);
CREATE INDEX quota_windows_expires ON quota_windows (expires_ms);
