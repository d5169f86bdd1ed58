# model-watchdog container image (docs/operations.md, "Container").
#   docker build -t model-watchdog .
#   docker run --read-only --tmpfs /tmp:size=16m \
#     -v $PWD/watchdog.yaml:/etc/model-watchdog/watchdog.yaml:ro -v mw-state:/var/lib/model-watchdog model-watchdog
# The root file system may be read-only: the daemon writes only its state (the volume at
# /var/lib/model-watchdog, or PostgreSQL) and short-lived files under $TMPDIR (/tmp).
#
# The base image is pinned by digest: the multi-platform image index (manifest list) digest of
# the tag, so every platform builds from the same bytes and a re-pushed tag cannot change the
# image. The tag stays in the reference for humans; when both are given, the digest decides.
# To refresh (then rebuild and run the tests):
#   docker buildx imagetools inspect python:3.11-slim    (the "Digest:" line at the top)
#   (or: crane digest python:3.11-slim; or: skopeo inspect --raw docker://python:3.11-slim | sha256sum)
# Use that index digest — not a per-platform manifest digest, not `docker inspect`'s image Id.
# Dependabot/Renovate ("docker" ecosystem) can propose the update as a pull request.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS build
# Extras baked into the image: add `kubernetes` for kubeconfigs with exec credential plugins.
ARG EXTRAS=postgresql,stats
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watchdog ./watchdog
COPY rules ./rules
RUN python -m venv /opt/model-watchdog \
 && /opt/model-watchdog/bin/pip install --no-cache-dir ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/model-watchdog /opt/model-watchdog
RUN groupadd --system --gid 10001 model-watchdog \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/model-watchdog --shell /usr/sbin/nologin model-watchdog \
 && mkdir -p /etc/model-watchdog /var/lib/model-watchdog \
 && chown model-watchdog:model-watchdog /var/lib/model-watchdog \
 && chmod 0700 /var/lib/model-watchdog
USER 10001:10001
WORKDIR /var/lib/model-watchdog
# No .pyc writes at run time (the venv is compiled at install); temp files under $TMPDIR.
# MALLOC_ARENA_MAX=2: two glibc malloc arenas, not one per thread (bench/README.md, "Memory");
# `run` sets the same itself, and a value given with `docker run -e` wins.
ENV PATH=/opt/model-watchdog/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TMPDIR=/tmp \
    HOME=/var/lib/model-watchdog MODEL_WATCHDOG_CONFIG=/etc/model-watchdog/watchdog.yaml MALLOC_ARENA_MAX=2
VOLUME ["/var/lib/model-watchdog"]
EXPOSE 9310
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9310/healthz', timeout=4).status == 200 else 1)"]
# SIGTERM: finish the evaluation in progress and exit 0 within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["model-watchdog"]
CMD ["run"]
