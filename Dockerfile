# syntax=docker/dockerfile:1
# multistream server image.
#
# Stage "build" has the C toolchain: it compiles the Cython compositor kernel into a wheel and installs
# that wheel with its dependencies into /opt/venv. Stage "runtime" copies only the venv: no compiler,
# no headers, no source tree, and the server runs as an unprivileged user.
#
#   docker build -t multistream:dev .
#   docker run --rm -p 8080:8080 -v multistream-data:/var/lib/multistream multistream:dev

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# gcc builds compositor/_fast.pyx; every other dependency (av, aiortc, numpy, ...) ships manylinux wheels.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY multistream ./multistream
COPY server ./server
COPY handlers ./handlers
COPY store ./store
COPY compositor ./compositor
# Build our wheel (Cython and numpy come from the isolated build environment), then install it into
# a self-contained venv, and fail the build here if the compiled kernel is not importable.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/multistream-*.whl \
    && /opt/venv/bin/python -c "import compositor._fast"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="multistream" \
      org.opencontainers.image.description="Multi-stream WebRTC livestreaming server"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MULTISTREAM_HOST=0.0.0.0 \
    MULTISTREAM_PORT=8080 \
    MULTISTREAM_DATA_DIR=/var/lib/multistream \
    MULTISTREAM_LOG_JSON=1
RUN groupadd --system --gid 10001 multistream \
    && useradd --system --uid 10001 --gid multistream --no-create-home \
       --home-dir /var/lib/multistream --shell /usr/sbin/nologin multistream \
    && mkdir -p /var/lib/multistream \
    && chown multistream:multistream /var/lib/multistream
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/multistream
VOLUME ["/var/lib/multistream"]
# HTTP (REST, signaling WebSockets, /metrics). WebRTC media uses UDP: see DEPLOYMENT.md.
EXPOSE 8080/tcp
# Liveness only (/healthz): readiness (/readyz) belongs to the orchestrator, which must stop routing
# to a draining instance without declaring it dead.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "server.healthcheck"]
# SIGTERM starts the graceful drain (DEPLOYMENT.md); give `docker stop` a matching --time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["multistream"]
CMD ["serve", "--host", "0.0.0.0"]
