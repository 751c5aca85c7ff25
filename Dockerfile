# syntax=docker/dockerfile:1
#
# One image with the production binaries (ingest, router, cams, routerctl) in
# /usr/local/bin; the container's command picks one. The all-in-one development
# runner (cmd/msgrouter) embeds a NATS server and is deliberately left out:
#
#   docker run --rm msgrouter ingest
#   docker run --rm msgrouter router migrate
#   docker run --rm msgrouter routerctl help
#
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t msgrouter .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# Static binaries (CGO off), reproducible paths (-trimpath), no VCS stamping (the
# .git directory is not in the build context; VERSION says what was built).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/msgrouter/msgrouter/internal/config.Version=${VERSION}" \
      -o /out/ ./cmd/ingest ./cmd/router ./cmd/cams ./cmd/routerctl

# debian-slim rather than distroless: the health checks of docker-compose.yml run
# curl inside the container. The binaries are static and need nothing else but CA
# certificates (HTTPS inboxes, TLS to NATS and Postgres).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 msgrouter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin msgrouter
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV LOG_FORMAT=json
# ingest, router admin API, CAMS (DESIGN §7 defaults).
EXPOSE 8080 8081 8001
# No ENTRYPOINT: the command names the binary (docker-compose.yml sets it per service).
CMD ["routerctl", "help"]
