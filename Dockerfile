# The platform's one image. Every process is a command of the `shuangjian` console script,
# so the command picks what a container runs: `serve registry`, `project`, `gateway`,
# or the default `up` (everything in one process, SQLite in the data dir).
#
#   docker build -t shuangjian .                      # the runtime image (the last stage)
#   docker build --target test -t shuangjian-tests .  # plus the dev dependencies and tests/
#
# Stages: `source` holds exactly what building the wheel needs; `build` and `build-test`
# only RUN scripts/install-image.sh, the script tests/deploy/test_dockerfile.py runs too;
# `runtime` and `test` copy the resulting virtualenv onto a fresh base.
#
# Base image: pinned by version. To pin its digest as well (a tag can be pushed again),
# resolve the digest where Docker Hub is reachable and pass the reference with it:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   # prints "Digest: sha256:…"
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# (or write it into the default below; the tests accept `name:version@sha256:<64 hex>`).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/install-image.sh scripts/
COPY services/ services/

FROM source AS build
RUN scripts/install-image.sh /opt/shuangjian

FROM source AS build-test
RUN scripts/install-image.sh /opt/shuangjian dev

# What the runtime and the test image share: the unprivileged user, the data dir.
FROM ${PYTHON_IMAGE} AS base
# 10001: a fixed numeric id, so Kubernetes' runAsNonRoot can check it and volumes can be
# prepared for it; no home, no shell. /run/secrets exists even where nothing is mounted,
# so the settings' secrets dir (SHUANGJIAN_SECRETS_DIR) is always there to read.
RUN groupadd --system --gid 10001 shuangjian \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shuangjian \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/shuangjian \
    && install -d -m 0755 /run/secrets
# Bytecode is compiled at install time; nothing writes .pyc at run time (the root file
# system is read-only in docker-compose.yml and in Kubernetes).
ENV PATH=/opt/shuangjian/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# `docker compose --profile test run --rm tests`: the real-server suites against the stack.
# Only tests/ and pyproject.toml (pytest's configuration) are here, not services/: the
# tests import the installed wheel, as the runtime image has it.
FROM base AS test
COPY --from=build-test /opt/shuangjian /opt/shuangjian
WORKDIR /src
COPY pyproject.toml ./
COPY tests/ tests/
# pytest's tmp_path and the processes the suites start write under /tmp (a tmpfs).
ENV HOME=/tmp
USER 10001:10001
ENTRYPOINT ["pytest"]
CMD ["-q", "-p", "no:cacheprovider", "tests/contract", "tests/kafka"]

# The runtime image: the default target, so it stays the last stage.
FROM base AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="shuangjian" \
      org.opencontainers.image.description="Supervision platform for off-campus training under the Double Reduction policy (双减)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=build /opt/shuangjian /opt/shuangjian
# Writable at run time: the data dir (a volume) and /tmp (a tmpfs where the root file
# system is read-only). SHUANGJIAN_HOST is where `up` listens (`serve` and `gateway` take
# --host). Secrets come as files named after their variable in SHUANGJIAN_SECRETS_DIR,
# e.g. /run/secrets/shuangjian_jwt_secret (compose and Kubernetes secrets mount there).
# SHUANGJIAN_HEALTHCHECK_URL is what the HEALTHCHECK asks: each process sets its own port
# and path (docker-compose.yml). (DL3064: SECRETS_DIR is a path, no secret.)
# hadolint ignore=DL3064
ENV SHUANGJIAN_DATA_DIR=/var/lib/shuangjian \
    SHUANGJIAN_SECRETS_DIR=/run/secrets \
    SHUANGJIAN_HOST=0.0.0.0 \
    SHUANGJIAN_LOG_FORMAT=json \
    SHUANGJIAN_HEALTHCHECK_URL=http://127.0.0.1:8000/healthz
WORKDIR /var/lib/shuangjian
VOLUME ["/var/lib/shuangjian"]
USER 10001:10001
# 8000 gateway (and `up`), 8001-8003 the services' command APIs, 6066 the projector's probes.
EXPOSE 8000 8001 8002 8003 6066
# No curl in the image: Python's standard library, bypassing any HTTP proxy of the
# environment; exit 0 on a 2xx answer, 1 on anything else (urllib raises).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.build_opener(r.ProxyHandler({})).open(os.environ['SHUANGJIAN_HEALTHCHECK_URL'], timeout=4).close()"]
ENTRYPOINT ["shuangjian"]
CMD ["up", "--host", "0.0.0.0"]
