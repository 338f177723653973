-- +goose Up
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    key_hash        TEXT NOT NULL,
    expires_at      DATETIME,
    allowed_models  TEXT,
    allowed_ips     TEXT,
    is_active       BOOLEAN NOT NULL DEFAULT 1,
    disabled_reason TEXT NOT NULL DEFAULT '',
    last_used_at    DATETIME,
    created_at      DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, created_at DESC);
CREATE INDEX api_keys_expires_at_idx ON api_keys (expires_at) WHERE is_active;

CREATE TABLE providers (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    base_url        TEXT NOT NULL,
    timeout_seconds INTEGER NOT NULL DEFAULT 0,
    enabled         BOOLEAN NOT NULL DEFAULT 1,
    headers         TEXT,
    source          TEXT NOT NULL DEFAULT 'api',
    created_at      DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE provider_keys (
    id                TEXT PRIMARY KEY,
    provider_id       TEXT NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    label             TEXT NOT NULL,
    secret_ciphertext BLOB NOT NULL,
    secret_last4      TEXT NOT NULL,
    weight            INTEGER NOT NULL DEFAULT 1,
    max_qps           INTEGER NOT NULL DEFAULT 0,
    enabled           BOOLEAN NOT NULL DEFAULT 1,
    disabled_reason   TEXT NOT NULL DEFAULT '',
    created_at        DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at        DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX provider_keys_label_key ON provider_keys (provider_id, label);

CREATE TABLE logical_models (
    name         TEXT PRIMARY KEY,
    capabilities TEXT NOT NULL,
    source       TEXT NOT NULL DEFAULT 'api',
    created_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE logical_model_candidates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    logical_model TEXT NOT NULL REFERENCES logical_models (name) ON DELETE CASCADE,
    provider_id   TEXT NOT NULL REFERENCES providers (id) ON DELETE RESTRICT,
    model         TEXT NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 0,
    weight        INTEGER NOT NULL DEFAULT 1,
    position      INTEGER NOT NULL
);
CREATE UNIQUE INDEX logical_model_candidates_position_key ON logical_model_candidates (logical_model, position);
CREATE INDEX logical_model_candidates_provider_id_idx ON logical_model_candidates (provider_id);

CREATE TABLE request_logs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at        DATETIME NOT NULL,
    request_id        TEXT NOT NULL,
    api_key_id        TEXT,
    user_id           TEXT,
    method            TEXT NOT NULL,
    path              TEXT NOT NULL,
    logical_model     TEXT NOT NULL DEFAULT '',
    provider_id       TEXT NOT NULL DEFAULT '',
    upstream_model    TEXT NOT NULL DEFAULT '',
    status_code       INTEGER NOT NULL,
    latency_ms        REAL NOT NULL,
    upstream_ms       REAL NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    stream            BOOLEAN NOT NULL DEFAULT 0,
    error_code        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX request_logs_created_at_idx ON request_logs (created_at);
CREATE INDEX request_logs_api_key_id_idx ON request_logs (api_key_id, created_at);
CREATE INDEX request_logs_user_id_idx ON request_logs (user_id, created_at);

ALTER TABLE chat_runs ADD COLUMN api_key_id TEXT REFERENCES api_keys (id) ON DELETE SET NULL;
ALTER TABLE chat_runs ADD COLUMN request_body TEXT;
CREATE INDEX chat_runs_api_key_id_idx ON chat_runs (api_key_id);

-- +goose Down
DROP INDEX chat_runs_api_key_id_idx;
ALTER TABLE chat_runs DROP COLUMN request_body;
ALTER TABLE chat_runs DROP COLUMN api_key_id;
DROP TABLE request_logs;
DROP TABLE logical_model_candidates;
DROP TABLE logical_models;
DROP TABLE provider_keys;
DROP TABLE providers;
DROP TABLE api_keys;
