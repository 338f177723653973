package payloadcodec

import (
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/aihigress/aihigress/internal/config"
)

// Converters are the data and failure converters of every Temporal client,
// worker and workflow replayer of the service. Workers take them from their
// client. A replayer needs them too, or it cannot read an encrypted history.
type Converters struct {
	Data    converter.DataConverter
	Failure converter.FailureConverter
	// Codec is nil when no payload key is configured.
	Codec *Codec
}

// New returns the converters for enc. Without keys they are the SDK's
// defaults. With TEMPORAL_PAYLOAD_KEY, every payload is encrypted. The
// failure converter then also moves error messages and stack traces, which
// may contain upstream text, into an encrypted payload, so the failure's
// message in the history reads "Encoded failure". With only old keys,
// payloads and failures that they encrypted are decrypted, and new ones
// stay in clear.
func New(enc config.PayloadEncryption) (Converters, error) {
	if !enc.Enabled() {
		return Converters{
			Data:    converter.GetDefaultDataConverter(),
			Failure: temporal.GetDefaultFailureConverter(),
		}, nil
	}
	codec, err := NewCodec(enc.Key, enc.OldKeys)
	if err != nil {
		return Converters{}, err
	}
	data := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec)
	failure := temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          data,
		EncodeCommonAttributes: enc.Key != nil,
	})
	return Converters{Data: data, Failure: failure, Codec: codec}, nil
}

// ReplayerOptions returns options for worker.NewWorkflowReplayerWithOptions
// that read histories written with these converters.
func (c Converters) ReplayerOptions() worker.WorkflowReplayerOptions {
	return worker.WorkflowReplayerOptions{DataConverter: c.Data, FailureConverter: c.Failure}
}
