# One production image. Web:    docker run IMAGE
#                       Worker: docker run IMAGE python manage.py rqworker control default --with-scheduler --max-jobs 1000
#                       Cron:   docker run IMAGE python manage.py rqcron jobs.cron
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIXELMILL_DATA_DIR=/var/lib/pixelmill

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --system --home /app pixelmill \
    && mkdir -p /var/lib/pixelmill \
    && PIXELMILL_SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && chown -R pixelmill /var/lib/pixelmill
USER pixelmill

EXPOSE 8000
# gevent workers (dashboard/gunicorn_config.py): slow clients cost a greenlet each, slow bodies get a 408.
CMD ["gunicorn", "dashboard.wsgi", "--config", "python:dashboard.gunicorn_config", "--bind", "0.0.0.0:8000", "--workers", "3"]
