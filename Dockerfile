# One image for every process (gateway, poller, workers, beat, flower); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The deal card's fonts (Noto Sans with its Arabic and Hebrew faces, DejaVu Sans as a fallback) and
# libraqm, Pillow's right-to-left and complex-script layout (domain/images.py).
# PostGIS is not installed here: it lives in the database image (postgis/postgis in
# docker-compose.yml); this image only talks to it, through GeoAlchemy2 from requirements.txt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-noto-core fonts-dejavu-core libraqm0 \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN useradd --create-home --uid 10001 app && chown -R app /app
USER app

EXPOSE 8080
CMD ["python", "-m", "bot.gateway"]
