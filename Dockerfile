# One production image (compose.yaml runs it as web, worker, scheduler and setup).
#   Web:    docker run IMAGE
#   Worker: docker run IMAGE python manage.py rqworker control default --with-scheduler --max-jobs 1000
#   Cron:   docker run IMAGE python manage.py rqcron jobs.cron
# The health check below is the web's liveness (/healthz); a worker or the scheduler replaces it with
# `python -m jobs.liveness worker` / `scheduler`, as compose.yaml does.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIXELMILL_DATA_DIR=/var/lib/pixelmill \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/pixelmill/prometheus

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --system --home /app pixelmill \
    && mkdir -p /var/lib/pixelmill/prometheus \
    && PIXELMILL_SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && chown -R pixelmill /var/lib/pixelmill
USER pixelmill

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# gevent workers (dashboard/gunicorn_config.py): slow clients cost a greenlet each, slow bodies get a 408.
CMD ["gunicorn", "dashboard.wsgi", "--config", "python:dashboard.gunicorn_config", "--bind", "0.0.0.0:8000", "--workers", "3"]
