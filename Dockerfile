# syntax=docker/dockerfile:1
#
# lsi worker / refresh image. Dependencies come from uv.lock exactly (`uv sync --frozen`), the
# project itself is installed as a regular (non-editable) package, and the runtime image
# carries only the virtual environment.
#
#   docker build -t lsi .
#   docker run --rm lsi worker            # entrypoint is the `lsi` console script

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

COPY --from=uv /uv /uvx /bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /src

# Third-party dependencies first: this layer is rebuilt only when the lock file changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 lsi \
 && useradd --system --uid 10001 --gid lsi --home-dir /var/lib/lsi --shell /usr/sbin/nologin lsi \
 && mkdir -p /var/lib/lsi/models /var/lib/lsi/tables \
 && chown -R lsi:lsi /var/lib/lsi

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LSI_DATA_DIR=/var/lib/lsi/tables \
    LSI_MODELS_DIR=/var/lib/lsi/models \
    LSI_WEB_BIND=0.0.0.0 \
    LSI_WEB_HOST=auto \
    LSI_WEB_PORT=6066

# Every path a volume is mounted on exists here, owned by lsi: an empty volume starts with its
# mount point's owner (a path the image lacks would be created root-owned, and the non-root
# worker could not write its RocksDB tables there). LSI_WEB_BIND listens on every interface;
# LSI_WEB_HOST=auto advertises the container's own address to the other workers.
WORKDIR /var/lib/lsi
USER lsi

# 6066: worker web server (/metrics, /recommendations/{user_id}); 9108: refresh job metrics.
EXPOSE 6066 9108

ENTRYPOINT ["lsi"]
CMD ["worker"]
