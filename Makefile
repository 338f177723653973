# AI Higress build and test entry points. `make dev` and `make test` work on a
# fresh machine with Go 1.26 and access to the Go module proxy.

GO ?= go
TEMPORAL_CLI_VERSION := v1.5.1
TEST_FLAGS ?=

.PHONY: dev test test-unit build bench replay-fixtures lint clean

# The Temporal CLI provides the dev server that `dev` and the integration
# tests start. It is built from source once; later builds hit the Go cache.
bin/temporal:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

build:
	$(GO) build -o bin/aihigress ./cmd/aihigress

dev: bin/temporal build
	./bin/aihigress dev

# Every test, including the integration tests against a Temporal dev server.
# Set TEST_DATABASE_URL and TEST_REDIS_URL to run them on PostgreSQL and Redis.
test: bin/temporal
	$(GO) vet ./...
	TEMPORAL_CLI_PATH=$(CURDIR)/bin/temporal $(GO) test -count=1 -timeout 30m $(TEST_FLAGS) ./...

test-unit:
	$(GO) test -count=1 -short ./...

bench: bin/temporal build
	TEMPORAL_CLI_PATH=$(CURDIR)/bin/temporal $(GO) run ./bench/chatbench

# Re-records the workflow histories that the replay test checks.
replay-fixtures: bin/temporal
	TEMPORAL_CLI_PATH=$(CURDIR)/bin/temporal RECORD_HISTORIES=1 $(GO) test -count=1 ./internal/integration/

clean:
	rm -rf bin data
