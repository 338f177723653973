-- The index on chat_run_events is built CONCURRENTLY, so that writers of
-- run events are not blocked while it builds on a large table. PostgreSQL
-- cannot do that inside a transaction, so this file runs without one, and
-- each statement can run again after a failed attempt.
-- +goose NO TRANSACTION

-- +goose Up

-- Gateway requests summed per hour, API key, user, logical model, provider
-- and HTTP status class ("2xx", "4xx", ...), written by the roll-up
-- schedule. Re-running an hour replaces its rows. errors counts the
-- requests with a status of 400 or more, or with an error code (a stream
-- that failed after its 200 headers).
CREATE TABLE IF NOT EXISTS request_log_hourly (
    id                BIGSERIAL PRIMARY KEY,
    hour_start        TIMESTAMPTZ NOT NULL,
    api_key_id        UUID,
    user_id           UUID,
    logical_model     TEXT NOT NULL,
    provider_id       TEXT NOT NULL,
    status_class      TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    latency_ms_sum    DOUBLE PRECISION NOT NULL,
    upstream_ms_sum   DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS request_log_hourly_hour_start_idx ON request_log_hourly (hour_start);
CREATE INDEX IF NOT EXISTS request_log_hourly_api_key_id_idx ON request_log_hourly (api_key_id, hour_start);
CREATE INDEX IF NOT EXISTS request_log_hourly_user_id_idx ON request_log_hourly (user_id, hour_start);

-- provider_metrics_minute summed per hour. The histogram columns are
-- cumulative counts, so the hourly histogram is the sum of the minute ones.
CREATE TABLE IF NOT EXISTS provider_metrics_hourly (
    hour_start     TIMESTAMPTZ NOT NULL,
    provider_id    TEXT NOT NULL,
    logical_model  TEXT NOT NULL,
    status         TEXT NOT NULL,
    requests       BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    tokens_in      BIGINT NOT NULL DEFAULT 0,
    tokens_out     BIGINT NOT NULL DEFAULT 0,
    latency_ms_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_le_50      BIGINT NOT NULL DEFAULT 0,
    latency_le_100     BIGINT NOT NULL DEFAULT 0,
    latency_le_250     BIGINT NOT NULL DEFAULT 0,
    latency_le_500     BIGINT NOT NULL DEFAULT 0,
    latency_le_750     BIGINT NOT NULL DEFAULT 0,
    latency_le_1000    BIGINT NOT NULL DEFAULT 0,
    latency_le_1500    BIGINT NOT NULL DEFAULT 0,
    latency_le_2000    BIGINT NOT NULL DEFAULT 0,
    latency_le_3000    BIGINT NOT NULL DEFAULT 0,
    latency_le_5000    BIGINT NOT NULL DEFAULT 0,
    latency_le_10000   BIGINT NOT NULL DEFAULT 0,
    latency_le_20000   BIGINT NOT NULL DEFAULT 0,
    latency_le_60000   BIGINT NOT NULL DEFAULT 0,
    latency_le_120000  BIGINT NOT NULL DEFAULT 0,
    ttft_count     BIGINT NOT NULL DEFAULT 0,
    ttft_ms_sum    DOUBLE PRECISION NOT NULL DEFAULT 0,
    ttft_le_50         BIGINT NOT NULL DEFAULT 0,
    ttft_le_100        BIGINT NOT NULL DEFAULT 0,
    ttft_le_250        BIGINT NOT NULL DEFAULT 0,
    ttft_le_500        BIGINT NOT NULL DEFAULT 0,
    ttft_le_750        BIGINT NOT NULL DEFAULT 0,
    ttft_le_1000       BIGINT NOT NULL DEFAULT 0,
    ttft_le_1500       BIGINT NOT NULL DEFAULT 0,
    ttft_le_2000       BIGINT NOT NULL DEFAULT 0,
    ttft_le_3000       BIGINT NOT NULL DEFAULT 0,
    ttft_le_5000       BIGINT NOT NULL DEFAULT 0,
    ttft_le_10000      BIGINT NOT NULL DEFAULT 0,
    ttft_le_20000      BIGINT NOT NULL DEFAULT 0,
    ttft_le_60000      BIGINT NOT NULL DEFAULT 0,
    ttft_le_120000     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hour_start, provider_id, logical_model, status)
);

-- Roll-up state of each source table: the end of the rolled-up hours, and
-- the time before which raw rows may have been deleted. Raw rows are
-- deleted only before rolled_until, so rows that were never rolled up stay,
-- and no hour before deleted_before is rolled up again, so no hourly row
-- is rebuilt from partly deleted raw rows.
CREATE TABLE IF NOT EXISTS rollup_progress (
    source_table   TEXT PRIMARY KEY,
    rolled_until   TIMESTAMPTZ NOT NULL,
    deleted_before TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- One row per probe of a provider by the probe schedule. provider_id has no
-- foreign key, so that the history outlives a deleted provider.
CREATE TABLE IF NOT EXISTS provider_health (
    id          BIGSERIAL PRIMARY KEY,
    provider_id TEXT NOT NULL,
    checked_at  TIMESTAMPTZ NOT NULL,
    healthy     BOOLEAN NOT NULL,
    status_code INTEGER NOT NULL DEFAULT 0,
    latency_ms  DOUBLE PRECISION NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS provider_health_provider_id_idx ON provider_health (provider_id, checked_at);
CREATE INDEX IF NOT EXISTS provider_health_checked_at_idx ON provider_health (checked_at);

-- The run event retention deletes events by age. A failed CONCURRENTLY
-- build leaves an invalid index behind, which the DROP removes first.
DROP INDEX CONCURRENTLY IF EXISTS chat_run_events_created_at_idx;
CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_run_events_created_at_idx ON chat_run_events (created_at);

-- +goose Down
DROP INDEX IF EXISTS chat_run_events_created_at_idx;
DROP TABLE IF EXISTS provider_health;
DROP TABLE IF EXISTS rollup_progress;
DROP TABLE IF EXISTS provider_metrics_hourly;
DROP TABLE IF EXISTS request_log_hourly;
