-- +goose Up
-- Upstream requests summed per minute, provider, logical model and status,
-- from the gateway and the worker. Each process adds its counts with an
-- upsert, so several processes can write the same row. The latency_le_N
-- and ttft_le_N columns are cumulative histogram counts: the number of
-- requests whose latency, or time to first token, was at most N ms. The
-- latency count is requests; the time to first token count is ttft_count.
CREATE TABLE provider_metrics_minute (
    bucket_start   TIMESTAMPTZ NOT NULL,
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
    PRIMARY KEY (bucket_start, provider_id, logical_model, status)
);

-- +goose Down
DROP TABLE provider_metrics_minute;
