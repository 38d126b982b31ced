# WigHaven Gateway as a Hugging Face Docker Space (or any container host).
#
# In the Space's settings, add the secret HF_TOKEN and the variable
# PRIVATE_BACKEND_URL (the private Space, e.g. https://user-space.hf.space).
# Every other setting (README, "Configuration reference") may be set as a
# variable too, e.g. DASHBOARD_PATH=/_gateway/.
FROM python:3.11-slim

# Only the CA bundle is needed from Debian (backend TLS verification).
# Versions are not pinned: the slim base moves with Debian security updates
# and ca-certificates must follow them, not lag behind a frozen pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Hugging Face Spaces run the container as uid 1000. /data holds the store
# (AUTH=on): a Space's persistent storage is mounted there; without it, the
# folder lives as long as the container.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin user \
    && mkdir -p /data && chown 1000:1000 /data && chmod 700 /data

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# Then the project itself (a normal install: twistd only finds the plugin
# in site-packages/twisted/plugins/, which an editable install does not fill).
# Twisted's plugin cache (dropin.cache) is written here, as root, so the
# non-root user never needs to write into site-packages. -I keeps /app off
# sys.path, so only the installed plugin directories are scanned.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && python -I -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

# PORT is read by the gateway itself. No proxy is trusted by the image: on a
# Space, set TRUST_PROXY=true (the gateway also turns it on when it finds
# SPACE_ID, and says so); elsewhere, name your own proxies' CIDRs.
ENV PORT=7860 \
    DATABASE_URL=sqlite:////data/wighaven.sqlite3

EXPOSE 7860

# No curl in the slim image: Python's urllib probes the health endpoint
# (any error or non-2xx answer raises, so python exits 1: unhealthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/gateway-health' % os.environ.get('PORT', '7860'), timeout=4)"]

USER 1000

# Exec form: twistd is PID 1 and receives SIGTERM itself for a graceful stop.
# The port comes from the PORT variable; no pid file is written.
CMD ["twistd", "--nodaemon", "--pidfile=", "wighaven"]
