#!/usr/bin/env bash
# Install everything, start the services the tests need, run lint and the whole suite.
# Works on a fresh Debian machine as root (apt-get) and on a developer box alike.
#
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== Debian packages (rabbitmq-server, redis-server, docker.io, busybox-static, prometheus, nodejs, npm)"
bash scripts/services.sh install

echo "== Python packages"
python3 -m pip install --quiet --disable-pip-version-check -e '.[all,test]'

echo "== AsyncAPI parser (npm @asyncapi/parser into .services/asyncapi, for tests/ops)"
if ! command -v npm >/dev/null; then
    echo "npm is missing: scripts/services.sh install brings nodejs and npm" >&2
    exit 1
fi
ASYNCAPI_DIR=.services/asyncapi
if [ ! -d "$ASYNCAPI_DIR/node_modules/@asyncapi/parser" ]; then
    mkdir -p "$ASYNCAPI_DIR"
    [ -f "$ASYNCAPI_DIR/package.json" ] || echo '{"private": true}' >"$ASYNCAPI_DIR/package.json"
    npm install --prefix "$ASYNCAPI_DIR" --no-audit --no-fund --silent '@asyncapi/parser@^3.6'
fi

echo "== services"
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"

echo "== lint"
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy

echo "== tests"
# CI=true makes a missing live service a failure instead of a skip.
export CI="${CI:-true}"
python3 -m pytest -p no:cacheprovider -q "$@"
