-- +goose Up
-- The stored images of an image run: a JSON array of
-- {object_key, size, content_type, revised_prompt}. Image bytes live in the
-- media storage, never in this row or in workflow history.
ALTER TABLE chat_runs ADD COLUMN output_images JSONB;

-- Image bytes when neither OSS nor a local directory is configured. Answers
-- then carry data: URLs built from these rows.
CREATE TABLE media_objects (
    object_key   TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    etag         TEXT NOT NULL,
    data         BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE media_objects;
ALTER TABLE chat_runs DROP COLUMN output_images;
