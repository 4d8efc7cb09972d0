# One image for the five services; the service is chosen by the command (`mdd serve NAME`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY mlkit ./mlkit
COPY infra/__init__.py infra/servers.py ./infra/
COPY infra/provision ./infra/provision
RUN pip install --upgrade pip && pip install .

RUN useradd --create-home --uid 10001 mdd
USER mdd
EXPOSE 8000 11112
ENTRYPOINT ["mdd"]
CMD ["up"]
