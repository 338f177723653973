# Image of the aihigress binary: serve, worker, migrate and healthcheck.
#
# The binary is static (CGO_ENABLED=0; SQLite comes from a pure-Go driver),
# so the final stage is scratch with only the binary, the CA certificates for
# HTTPS calls to upstream providers, and the image directory. There is no
# shell, so health checks run `aihigress healthcheck`.
#
# NOTE: no Docker engine was available when this file was written, so it has
# not been built. internal/deploytest checks its structure and builds the
# binary with the same flags outside Docker.
#
#   docker build -t aihigress:local .

# Go 1.26.8 is the toolchain the tests ran with when this file was written;
# go.mod requires Go 1.26.0 or later.
FROM golang:1.26.8-bookworm AS build

WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/aihigress ./cmd/aihigress

# The local image storage (IMAGE_LOCAL_DIR). Docker copies the owner of this
# directory into a new named volume mounted on it, so the non-root user can
# write there.
RUN mkdir -p /out/media

FROM scratch

COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/aihigress /usr/local/bin/aihigress
COPY --from=build --chown=65532:65532 /out/media /var/lib/aihigress/media

# 65532 is the "nonroot" user of the distroless images. Scratch has no
# /etc/passwd, so the user is given by number.
USER 65532:65532

ENTRYPOINT ["/usr/local/bin/aihigress"]
CMD ["serve"]
