#!/usr/bin/env bash
# Install everything, start the services the tests need, run lint and the whole suite.
# Works on a fresh Debian machine as root (apt-get) and on a developer box alike.
#
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== Debian packages (rabbitmq-server, redis-server, docker.io, busybox-static, prometheus)"
bash scripts/services.sh install

echo "== Python packages"
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

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
