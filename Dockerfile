# Ruby Core's images: one per program (ruby-gateway, ruby-engine, ruby-audit-sink, rubyctl),
# all from this one file, chosen by build arguments (ADR-0016). For example:
#   buildah build --build-arg PACKAGE=ruby-gateway --build-arg COMMAND=ruby-gateway \
#     --build-arg REVISION="$(git rev-parse --short=12 HEAD)" -t ruby-core-gateway .
# BASE_IMAGE is pinned by digest in a release; `make image-test` passes a Debian-made one.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- build: the program's package and its locked dependencies, into /app/venv, with uv ---
FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_PROJECT_ENVIRONMENT=/app/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
# A build behind a TLS-inspecting proxy passes its CA bundle as the secret `ca` (never stored in
# a layer): `--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt`.
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m pip install --no-cache-dir --break-system-packages "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY pkg ./pkg
COPY services ./services
ARG PACKAGE=ruby-gateway
ARG COMMAND=ruby-gateway
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && uv sync --frozen --no-dev --no-editable --package "${PACKAGE}" \
    && test -x "/app/venv/bin/${COMMAND}" \
    && ln -s "/app/venv/bin/${COMMAND}" /app/entrypoint

# --- dev: the devcontainer's image (.devcontainer/): the tools `make sync` and the tests need;
# the checkout is mounted, and `make sync` makes .venv in it. Build it with --target dev. ---
FROM ${BASE_IMAGE} AS dev
# Unpinned on purpose: a development image takes the base release's current packages.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git make iproute2 ca-certificates nodejs npm \
    && rm -rf /var/lib/apt/lists/*

# --- user: the base with the user `ruby` and its state directory, whose folders a named volume
# mounts (JetStream, OpenBao, the audit store) are made here so a new volume is the user's ---
FROM ${BASE_IMAGE} AS user
RUN groupadd --system --gid 10001 ruby \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ruby --create-home ruby \
    && install -d -o ruby -g ruby -m 0700 /var/lib/ruby/nats /var/lib/ruby/openbao \
       /var/lib/ruby/audit
ENV PATH="/app/venv/bin:${PATH}" \
    RUBY_STATE_DIR=/var/lib/ruby \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/ruby

# --- runtime: the user, the virtual environment; no uv, no compiler, no sources ---
FROM user AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
ARG COMMAND=ruby-gateway
# buildah's layer cache keys LABEL and ENV on their text, not on the arguments in them, and a
# new commit often leaves /app unchanged: a RUN is keyed on its arguments, so this one makes a
# new revision rebuild the labels and RUBY_REVISION below.
RUN test -n "${REVISION}${VERSION}"
LABEL org.opencontainers.image.title="${COMMAND}" \
      org.opencontainers.image.description="Ruby Core: ${COMMAND}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /app /app
ENV RUBY_REVISION="${REVISION}"
USER 10001:10001
ENTRYPOINT ["/app/entrypoint"]

# --- live: every program, installed editable from /src, for compose/docker-compose.yml: the
# checkout's pkg/ and services/ are mounted over /src, and `rubyctl live SERVICE` restarts a
# service when its Python source changes (ADR-0010). Build it with --target live. ---
FROM build AS live-build
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && uv sync --frozen --no-dev --all-packages

FROM user AS live
ARG REVISION=live
RUN test -n "${REVISION}"
COPY --from=live-build /app/venv /app/venv
COPY --from=live-build /src /src
RUN ln -s /app/venv/bin/rubyctl /app/entrypoint
ENV RUBY_REVISION="${REVISION}"
USER 10001:10001
ENTRYPOINT ["/app/entrypoint"]
CMD ["--help"]

# --- cli: rubyctl, a command run to completion; nothing to watch ---
FROM runtime AS cli
HEALTHCHECK NONE

# --- service (the default): a long-running service, healthy while its heartbeat is fresh
# (touched every 5 s while connected to NATS; `--healthcheck` exits 1 past 30 s) ---
FROM runtime AS service
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/app/entrypoint", "--healthcheck"]
