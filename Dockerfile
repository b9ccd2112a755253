# runner in a container: slim Python, non-root, health-checked. Build: docker build -t runner .
# Run:   docker run -p 7860:7860 -e RUNNER_API_KEY=... -v $PWD/bots:/bots runner serve /bots/echo.py --transport websocket
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RUNNER_HOST=0.0.0.0 \
    RUNNER_PORT=7860 \
    RUNNER_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY bots ./bots
RUN pip install '.[all]' \
    && useradd --create-home --uid 10001 runner

USER runner
EXPOSE 7860
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request, os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"RUNNER_PORT\"]}/health', timeout=2)"

# SIGTERM drains (running sessions finish, up to RUNNER_DRAIN_TIMEOUT); exec form so runner gets it.
ENTRYPOINT ["runner"]
CMD ["serve", "bots/echo.py"]
