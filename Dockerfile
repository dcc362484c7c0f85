# syntax=docker/dockerfile:1
# The image of any NPO service, chosen by build arguments. Build from the repository root:
#   docker build --build-arg SERVICE=index --build-arg PORT=8101 -t npo-index .
# SERVICE names a package under services/; PORT is its HTTP port as its settings define it
# (docker-compose.yml passes both; tests/test_compose.py checks they agree with the code).

FROM python:3.11-slim AS build
ARG SERVICE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY libs libs
COPY services/${SERVICE} services/${SERVICE}
# Wheels for the service, every shared library and every dependency, at the pinned versions
# (pip finds an npo-* dependency only among the libraries built here).
RUN test -n "${SERVICE}" \
 && pip wheel --wheel-dir /wheels --constraint requirements/constraints.txt \
        ./libs/*/ "./services/${SERVICE}"

FROM python:3.11-slim
ARG SERVICE
ARG PORT
# NPO_HTTP_HOST: every service listens on all interfaces inside the container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NPO_STATE_DIR=/var/lib/npo \
    NPO_HTTP_HOST=0.0.0.0 \
    NPO_SERVICE=${SERVICE}
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "npo-${SERVICE}" \
 && useradd --system --uid 10001 --user-group --no-log-init --home-dir /var/lib/npo npo \
 && install -d -o npo -g npo /var/lib/npo
USER npo
WORKDIR /var/lib/npo

EXPOSE ${PORT}
# Probe the port the service's settings resolve to (found by its npo.services entry point), so
# an overridden <SERVICE>_HTTP_PORT is probed too.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; from importlib.metadata import entry_points as e; s = e(group='npo.services')[os.environ['NPO_SERVICE']].load()(); r.urlopen(f'http://127.0.0.1:{s.http_port}/health', timeout=3)"]
# exec: the service itself is PID 1 and gets the stop signal.
CMD ["sh", "-c", "exec \"npo-${NPO_SERVICE}\""]
