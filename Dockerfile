# syntax=docker/dockerfile:1
# The Pora image: one image for every service (gateway, worker, sink, feed, topics, db migrate);
# the command picks the service, e.g. `docker run pora gateway`. Configuration comes from PORA_*
# environment variables at run time (deploy/compose/compose.yaml, Kubernetes): nothing secret and
# no PORA_MODE is baked in.
#
#   docker build -t pora:local .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the pora wheel (hatchling) and a wheel of every dependency ----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# the wheel's metadata (pyproject names README.md as the readme), then the four packages it ships
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY connectors ./connectors
COPY monitoring ./monitoring
RUN pip wheel --wheel-dir /wheels .

# ---- runtime: a virtual environment with pora installed from those wheels only -------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/pora/bin:$PATH \
    PORA_STATE_DIR=/var/lib/pora

RUN groupadd --system --gid 10001 pora \
    && useradd --system --uid 10001 --gid pora --home-dir /var/lib/pora --create-home \
       --shell /usr/sbin/nologin pora

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/pora \
    && /opt/pora/bin/pip install --no-cache-dir --no-index --find-links=/wheels pora \
    && /opt/pora/bin/pora --help >/dev/null

# the working directory is writable by the service user: the state dir, and the worker's faust
# data directory (<app id>-data, created in the working directory)
WORKDIR /var/lib/pora
USER pora:pora

# gateway, feed, worker /metrics, sink /metrics
EXPOSE 8088 8090 9101 9102

ENTRYPOINT ["pora"]
CMD ["--help"]
