package payloadcodec

import (
	"bytes"
	"errors"
	"testing"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/aihigress/aihigress/internal/config"
)

func TestNewWithoutKeysUsesDefaults(t *testing.T) {
	conv, err := New(config.PayloadEncryption{})
	if err != nil {
		t.Fatal(err)
	}
	if conv.Codec != nil {
		t.Error("Codec is set without keys")
	}
	if conv.Data != converter.GetDefaultDataConverter() {
		t.Errorf("Data = %T, want the SDK's default data converter", conv.Data)
	}
	if conv.Failure != temporal.GetDefaultFailureConverter() {
		t.Errorf("Failure = %T, want the SDK's default failure converter", conv.Failure)
	}
	payload, err := conv.Data.ToPayload("clear")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(payload.Metadata[converter.MetadataEncoding]); got != "json/plain" {
		t.Errorf("encoding = %q, want json/plain", got)
	}
}

func TestNewEncryptsFailureMessages(t *testing.T) {
	const upstreamText = "upstream said: the prompt 'my bank PIN is 1234' violates policy"
	tests := []struct {
		name        string
		enc         config.PayloadEncryption
		wantEncoded bool
	}{
		{"current key", config.PayloadEncryption{Key: testKey(1)}, true},
		{"old keys only", config.PayloadEncryption{OldKeys: [][]byte{testKey(1)}}, false},
		{"no key", config.PayloadEncryption{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conv, err := New(tt.enc)
			if err != nil {
				t.Fatal(err)
			}
			failure := conv.Failure.ErrorToFailure(temporal.NewNonRetryableApplicationError(upstreamText, "upstream_bad_request", nil, "detail of "+upstreamText))
			raw, err := proto.Marshal(failure)
			if err != nil {
				t.Fatal(err)
			}
			inClear := bytes.Contains(raw, []byte(upstreamText))
			if tt.wantEncoded {
				if failure.GetMessage() != "Encoded failure" {
					t.Errorf("failure message = %q, want %q", failure.GetMessage(), "Encoded failure")
				}
				if inClear {
					t.Error("the serialized failure contains the error message in clear")
				}
			} else if !inClear {
				t.Error("the serialized failure lacks the message, want it in clear without a current key")
			}
			// The error type stays readable, because the workflow and the
			// retry policy match on it.
			if got := failure.GetApplicationFailureInfo().GetType(); got != "upstream_bad_request" {
				t.Errorf("failure type = %q", got)
			}

			back := conv.Failure.FailureToError(failure)
			var appErr *temporal.ApplicationError
			if !errors.As(back, &appErr) {
				t.Fatalf("FailureToError = %T, want *temporal.ApplicationError", back)
			}
			if appErr.Message() != upstreamText || appErr.Type() != "upstream_bad_request" || !appErr.NonRetryable() {
				t.Errorf("decoded error = %q type %q non-retryable %v", appErr.Message(), appErr.Type(), appErr.NonRetryable())
			}
			var detail string
			if err := appErr.Details(&detail); err != nil || detail != "detail of "+upstreamText {
				t.Errorf("decoded details = %q, %v", detail, err)
			}
		})
	}
}

func TestNewRejectsBadKey(t *testing.T) {
	if _, err := New(config.PayloadEncryption{Key: []byte("short")}); err == nil {
		t.Fatal("New accepted a 5-byte key")
	}
}
