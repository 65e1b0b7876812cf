# One image for every creditflow process; docker-compose.yml picks the command.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install -e . && useradd --create-home creditflow && mkdir -p /app/var && chown creditflow /app/var
USER creditflow
EXPOSE 8000 5555
CMD ["creditflow", "api", "--host", "0.0.0.0"]
