# syntax=docker/dockerfile:1
#
# Taskforge: one image for the operator and for the step executor.
#
#   docker build -t taskforge:dev .
#
# * The operator's Deployment runs the default command, `taskforge-operator`.
# * Step Jobs run the same image with `command: [taskforge-executor]`
#   (taskforge_executor.contract.EXECUTOR_COMMAND). There is no ENTRYPOINT, so a
#   pod's `command` replaces the CMD and nothing wraps it.
# * The process runs as uid/gid 65532 (the uid the operator's step pods request),
#   and writes nothing outside /tmp, so it works with `readOnlyRootFilesystem: true`
#   and an emptyDir at /tmp (the Helm chart and the step Jobs mount one).
#
# `make image` builds this file unchanged with buildah (hack/build-images.sh), and
# tests/e2e/node/ checks these rules on the built image on a real kubelet + containerd
# node: its config, `id -u`, the read-only root, and both entrypoints starting.

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# --- build: a virtualenv with the runtime dependencies and the project wheel ---------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv has no pip or setuptools of its own; the base image's pip installs into it.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src

# Dependencies first (from pyproject's [project.dependencies], never the dev extra), so
# this layer is rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['operator']))" \
        > /tmp/requirements.txt \
    && pip --python /opt/venv/bin/python install -r /tmp/requirements.txt

# The project itself, as a wheel installed without dependencies (they are in place).
COPY operator/ operator/
COPY executor/ executor/
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && pip --python /opt/venv/bin/python install --no-deps /tmp/wheels/taskforge-*.whl \
    && pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/python -c "import taskforge.handlers.main, taskforge_executor.__main__"

# --- runtime ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="taskforge" \
      org.opencontainers.image.description="Kubernetes-native workflow engine: the operator (default command taskforge-operator) and the step executor (taskforge-executor)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/taskforge/taskforge" \
      org.opencontainers.image.documentation="https://github.com/taskforge/taskforge/blob/main/docs/install.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-trixie"

# A named user for tools that look the uid up; HOME is /tmp, the only writable place.
RUN groupadd --system --gid 65532 taskforge \
    && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin taskforge

COPY --from=build /opt/venv /opt/venv

# Bytecode was compiled at install time; never try to write it on a read-only root.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

WORKDIR /tmp
USER 65532:65532

# the one HTTP server (/metrics, /healthz, /readyz, POST /hooks/{namespace}/{workflow}) and
# the admission webhook (chart: admission.enabled)
EXPOSE 8080 9443

CMD ["taskforge-operator"]
