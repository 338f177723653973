-- +goose Up
-- The finish reason and tool calls of a run's successful upstream attempt,
-- which GET /v1/runs/{id}/result returns in the chat completion object.
ALTER TABLE chat_runs ADD COLUMN finish_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE chat_runs ADD COLUMN output_tool_calls TEXT;

-- +goose Down
ALTER TABLE chat_runs DROP COLUMN output_tool_calls;
ALTER TABLE chat_runs DROP COLUMN finish_reason;
