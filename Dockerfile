# The Tally image: one install, run as `tally migrate`, `tally api`, `tally worker`,
# `tally relay` or `tally webhooks`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY api ./api
COPY worker ./worker
COPY ledger ./ledger
COPY migrations ./migrations
COPY tally ./tally
RUN pip install . && rm -rf /src

# Not root: Celery warns against it.
RUN useradd --create-home --uid 10001 tally
USER tally
WORKDIR /home/tally

EXPOSE 8000
CMD ["tally", "--help"]
