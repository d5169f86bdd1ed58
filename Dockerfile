# model-watchdog container image: run next to a model server (sidecar) or on its own.
#   docker build -t model-watchdog .
#   docker run -v $PWD/watchdog.yaml:/etc/model-watchdog/watchdog.yaml:ro -v mw-state:/var/lib/model-watchdog model-watchdog
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watchdog ./watchdog
COPY rules ./rules
RUN python -m venv /opt/model-watchdog \
 && /opt/model-watchdog/bin/pip install --no-cache-dir '.[postgresql,stats]'

FROM python:3.11-slim
COPY --from=build /opt/model-watchdog /opt/model-watchdog
RUN useradd --system --uid 10001 --home /var/lib/model-watchdog model-watchdog \
 && mkdir -p /etc/model-watchdog /var/lib/model-watchdog \
 && chown model-watchdog /var/lib/model-watchdog
USER 10001
WORKDIR /var/lib/model-watchdog
ENV PATH=/opt/model-watchdog/bin:$PATH PYTHONUNBUFFERED=1 MODEL_WATCHDOG_CONFIG=/etc/model-watchdog/watchdog.yaml
EXPOSE 9310
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9310/healthz', timeout=4).status == 200 else 1)"
# SIGTERM: finish the evaluation in progress and exit 0 within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["model-watchdog"]
CMD ["run"]
