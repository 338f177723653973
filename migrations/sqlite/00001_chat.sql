-- +goose Up
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_superuser  BOOLEAN NOT NULL DEFAULT 0,
    is_active     BOOLEAN NOT NULL DEFAULT 1,
    created_at    DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE assistants (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    system_prompt         TEXT NOT NULL DEFAULT '',
    default_logical_model TEXT NOT NULL,
    model_preset          TEXT,
    created_at            DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at            DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX assistants_user_id_idx ON assistants (user_id, created_at DESC, id DESC);

CREATE TABLE conversations (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    assistant_id TEXT NOT NULL REFERENCES assistants (id) ON DELETE CASCADE,
    title        TEXT NOT NULL DEFAULT '',
    archived     BOOLEAN NOT NULL DEFAULT 0,
    next_seq     BIGINT NOT NULL DEFAULT 1,
    created_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX conversations_user_id_idx ON conversations (user_id, updated_at DESC, id DESC);
CREATE INDEX conversations_assistant_id_idx ON conversations (assistant_id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    run_id          TEXT,
    created_at      DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX messages_conversation_seq_key ON messages (conversation_id, seq);
CREATE INDEX messages_user_id_idx ON messages (user_id);
CREATE INDEX messages_run_id_idx ON messages (run_id);

CREATE TABLE chat_runs (
    id                      TEXT PRIMARY KEY,
    user_id                 TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id         TEXT REFERENCES conversations (id) ON DELETE CASCADE,
    user_message_id         TEXT REFERENCES messages (id) ON DELETE CASCADE,
    assistant_message_id    TEXT REFERENCES messages (id) ON DELETE CASCADE,
    kind                    TEXT NOT NULL,
    status                  TEXT NOT NULL,
    requested_logical_model TEXT NOT NULL,
    selected_provider_id    TEXT NOT NULL DEFAULT '',
    selected_provider_model TEXT NOT NULL DEFAULT '',
    model_preset            TEXT,
    workflow_id             TEXT NOT NULL,
    idempotency_key         TEXT,
    attempt                 INTEGER NOT NULL DEFAULT 0,
    prompt_tokens           INTEGER NOT NULL DEFAULT 0,
    completion_tokens       INTEGER NOT NULL DEFAULT 0,
    error_code              TEXT NOT NULL DEFAULT '',
    error_message           TEXT NOT NULL DEFAULT '',
    output_text             TEXT NOT NULL DEFAULT '',
    output_preview          TEXT NOT NULL DEFAULT '',
    started_at              DATETIME,
    finished_at             DATETIME,
    latency_ms              BIGINT,
    created_at              DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at              DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX chat_runs_user_id_idx ON chat_runs (user_id, created_at DESC);
CREATE INDEX chat_runs_conversation_id_idx ON chat_runs (conversation_id);
CREATE INDEX chat_runs_user_message_id_idx ON chat_runs (user_message_id);
CREATE INDEX chat_runs_assistant_message_id_idx ON chat_runs (assistant_message_id);
CREATE UNIQUE INDEX chat_runs_idempotency_key ON chat_runs (user_id, idempotency_key);

CREATE TABLE chat_run_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES chat_runs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX chat_run_events_run_seq_key ON chat_run_events (run_id, seq);

-- +goose Down
DROP TABLE chat_run_events;
DROP TABLE chat_runs;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE assistants;
DROP TABLE users;
