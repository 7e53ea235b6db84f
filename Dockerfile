# The alerts service. Build: docker build -t alerts .   Run: docker run alerts check
FROM python:3.11-slim AS build
# python-olm (Matrix end-to-end encryption) compiles libolm
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data alerts \
    && mkdir -p /data /config \
    && chown alerts /data
COPY --from=build /install /usr/local
COPY config /config
ENV ALERTS_CONFIG_DIR=/config \
    ALERTS_DATA_DIR=/data \
    ALERTS_DATABASE_URL=sqlite:////data/alerts.db \
    ALERTS_HTTP_BIND=0.0.0.0:9464 \
    PYTHONUNBUFFERED=1
USER alerts
WORKDIR /data
VOLUME /data
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3)"]
ENTRYPOINT ["alerts"]
CMD ["run"]
