# flowpbx: one container, configured by environment (see README "Configuration").
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 flowpbx
COPY --from=build /install /usr/local
WORKDIR /app
COPY flows ./flows
USER flowpbx
ENV PORT=3020 FLOWPBX_FLOWS_DIR=/app/flows
EXPOSE 3020
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"3020\")}/health', timeout=2)"
CMD ["flowpbx", "serve"]
