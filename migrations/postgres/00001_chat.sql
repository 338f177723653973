-- +goose Up
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_superuser  BOOLEAN NOT NULL DEFAULT FALSE,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE assistants (
    id                    UUID PRIMARY KEY,
    user_id               UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    system_prompt         TEXT NOT NULL DEFAULT '',
    default_logical_model TEXT NOT NULL,
    model_preset          JSONB,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX assistants_user_id_idx ON assistants (user_id, created_at DESC, id DESC);

CREATE TABLE conversations (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    assistant_id UUID NOT NULL REFERENCES assistants (id) ON DELETE CASCADE,
    title        TEXT NOT NULL DEFAULT '',
    archived     BOOLEAN NOT NULL DEFAULT FALSE,
    next_seq     BIGINT NOT NULL DEFAULT 1,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversations_user_id_idx ON conversations (user_id, updated_at DESC, id DESC);
CREATE INDEX conversations_assistant_id_idx ON conversations (assistant_id);

CREATE TABLE messages (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    role            TEXT NOT NULL,
    content         JSONB NOT NULL,
    run_id          UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_conversation_seq_key ON messages (conversation_id, seq);
CREATE INDEX messages_user_id_idx ON messages (user_id);
CREATE INDEX messages_run_id_idx ON messages (run_id);

CREATE TABLE chat_runs (
    id                      UUID PRIMARY KEY,
    user_id                 UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id         UUID REFERENCES conversations (id) ON DELETE CASCADE,
    user_message_id         UUID REFERENCES messages (id) ON DELETE CASCADE,
    assistant_message_id    UUID REFERENCES messages (id) ON DELETE CASCADE,
    kind                    TEXT NOT NULL,
    status                  TEXT NOT NULL,
    requested_logical_model TEXT NOT NULL,
    selected_provider_id    TEXT NOT NULL DEFAULT '',
    selected_provider_model TEXT NOT NULL DEFAULT '',
    model_preset            JSONB,
    workflow_id             TEXT NOT NULL,
    idempotency_key         TEXT,
    attempt                 INTEGER NOT NULL DEFAULT 0,
    prompt_tokens           INTEGER NOT NULL DEFAULT 0,
    completion_tokens       INTEGER NOT NULL DEFAULT 0,
    error_code              TEXT NOT NULL DEFAULT '',
    error_message           TEXT NOT NULL DEFAULT '',
    output_text             TEXT NOT NULL DEFAULT '',
    output_preview          TEXT NOT NULL DEFAULT '',
    started_at              TIMESTAMPTZ,
    finished_at             TIMESTAMPTZ,
    latency_ms              BIGINT,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX chat_runs_user_id_idx ON chat_runs (user_id, created_at DESC);
CREATE INDEX chat_runs_conversation_id_idx ON chat_runs (conversation_id);
CREATE INDEX chat_runs_user_message_id_idx ON chat_runs (user_message_id);
CREATE INDEX chat_runs_assistant_message_id_idx ON chat_runs (assistant_message_id);
CREATE UNIQUE INDEX chat_runs_idempotency_key ON chat_runs (user_id, idempotency_key);

CREATE TABLE chat_run_events (
    id         BIGSERIAL PRIMARY KEY,
    run_id     UUID NOT NULL REFERENCES chat_runs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    payload    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX chat_run_events_run_seq_key ON chat_run_events (run_id, seq);

-- +goose Down
DROP TABLE chat_run_events;
DROP TABLE chat_runs;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE assistants;
DROP TABLE users;
