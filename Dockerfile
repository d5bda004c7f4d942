# syntax=docker/dockerfile:1
# SpacePanda node image. Build from the repo root:
#   docker build -t spacepanda:0.1.0 .
# Run one node (the data dir is the /data volume; more in deploy/README.md):
#   docker run -d --name sp1 -v sp1-data:/data -p 4001:4001/tcp -p 4001:4001/udp \
#       -e SPACEPANDA_ANNOUNCE=/ip4/<public IP>/tcp/4001 spacepanda:0.1.0
#
# The admin API binds 127.0.0.1:5001 *inside the container*: HEALTHCHECK runs in the same network
# namespace and reaches it there, while nothing outside the container can (publishing 5001 gets
# you nothing). To scrape /metrics from another container, set SPACEPANDA_API=/ip4/0.0.0.0/tcp/5001
# on a private network and never publish that port (docs/operations.md, "Admin API exposure").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the project and its dependencies as wheels, installed into a venv ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY node/ node/
COPY dht/ dht/
COPY mls/ mls/
COPY api/ api/
# The git commit `spacepanda version` reports (the build context has no .git):
#   docker build --build-arg SPACEPANDA_COMMIT="$(git rev-parse HEAD)" -t spacepanda:0.1.0 .
ARG SPACEPANDA_COMMIT=unknown
# One wheel for the project plus one per dependency, then a pip-less venv holding all of them:
# the runtime stage copies the venv and nothing else from here.
RUN printf '%s\n' "${SPACEPANDA_COMMIT}" > node/BUILD_COMMIT \
 && pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/spacepanda \
 && pip --python /opt/spacepanda/bin/python install --no-cache-dir --no-index \
        --find-links /wheels /wheels/spacepanda-*.whl

# ---- runtime: slim Python, the venv, an unprivileged user --------------------------------------
FROM ${PYTHON_IMAGE}
ARG UID=10001
ARG GID=10001
LABEL org.opencontainers.image.title="spacepanda" \
      org.opencontainers.image.description="SpacePanda peer-to-peer end-to-end encrypted group messenger node" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric UID/GID: Kubernetes' runAsNonRoot can only check a numeric USER, and the data
# volume's ownership must not depend on the order users happen to be created in.
RUN groupadd --system --gid "${GID}" spacepanda \
 && useradd --system --uid "${UID}" --gid spacepanda --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin spacepanda \
 && install -d -m 0700 -o spacepanda -g spacepanda /data
COPY --from=builder /opt/spacepanda /opt/spacepanda
COPY deploy/docker/healthcheck.py /opt/spacepanda/bin/spacepanda-healthcheck
COPY deploy/spacepanda-backup /opt/spacepanda/bin/spacepanda-backup
ENV PATH=/opt/spacepanda/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SPACEPANDA_DATA_DIR=/data \
    SPACEPANDA_LISTEN=/ip4/0.0.0.0/tcp/4001 \
    SPACEPANDA_API=/ip4/127.0.0.1/tcp/5001 \
    SPACEPANDA_LOG_FORMAT=json
# identity.key, api.token, config.toml and node.db live here: keep it on a volume and back it up.
VOLUME ["/data"]
# TCP for the transport, UDP for the DHT, same port number. The API port is deliberately absent.
EXPOSE 4001/tcp 4001/udp
USER ${UID}:${GID}
WORKDIR /data
STOPSIGNAL SIGTERM
# GET /healthz on the API address the node wrote to /data/api (unauthenticated, loopback).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["spacepanda-healthcheck"]
ENTRYPOINT ["spacepanda", "run", "--init"]
