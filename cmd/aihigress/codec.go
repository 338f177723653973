package main

import (
	"context"
	"log/slog"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/devenv"
	"github.com/aihigress/aihigress/internal/payloadcodec"
)

// runCodecServer serves the codec endpoints until ctx ends.
func runCodecServer(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	converters, err := payloadcodec.New(cfg.Payloads)
	if err != nil {
		return err
	}
	srv, err := payloadcodec.StartServer(cfg.CodecServer, converters, logger)
	if err != nil {
		return err
	}
	return srv.Wait(ctx)
}

// startDevCodecServer starts the codec server of `dev` and returns it with
// the endpoint for the Web UI. That endpoint carries the token in its path,
// because the UI cannot send a fixed bearer token. Without
// CODEC_SERVER_TOKEN, the token is a development value kept in the data
// folder.
func startDevCodecServer(cfg *config.Config, logger *slog.Logger) (*payloadcodec.Server, string, error) {
	path := devSecretsPath(*cfg)
	tokenSource := "the environment"
	if cfg.CodecServer.Token == "" {
		tokenSource = path
		values, err := devenv.DevSecrets(path, []string{"CODEC_SERVER_TOKEN"}, func() string { return config.RandomToken(32) })
		if err != nil {
			return nil, "", err
		}
		cfg.CodecServer.Token = values["CODEC_SERVER_TOKEN"]
		logger.Info("CODEC_SERVER_TOKEN is not set, so the codec server uses the development value stored in "+path, "variable", "CODEC_SERVER_TOKEN")
	}
	converters, err := payloadcodec.New(cfg.Payloads)
	if err != nil {
		return nil, "", err
	}
	srv, err := payloadcodec.StartServer(cfg.CodecServer, converters, logger)
	if err != nil {
		return nil, "", err
	}
	logger.Info("decode payloads with the Temporal CLI: temporal workflow show --codec-endpoint "+srv.URL()+" --codec-auth \"Bearer $CODEC_SERVER_TOKEN\", with CODEC_SERVER_TOKEN from "+tokenSource,
		"codec_endpoint", srv.URL())
	return srv, srv.URL() + "/" + cfg.CodecServer.Token, nil
}
