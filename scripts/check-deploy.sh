#!/usr/bin/env bash
# Checks the operator files in deploy/ and docker-compose.yml with the real tools,
# where they are installed:
#   promtool  (Debian: apt-get install -y --no-install-recommends prometheus)
#   docker compose (only if a Docker CLI is present)
# The Go tests of test/e2e check the same files against the running services
# (metric and label names, env variables, ports): go test ./test/e2e/...
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
if command -v promtool >/dev/null; then
  (cd deploy/prometheus &&
    promtool check rules alerts.yml &&
    promtool check config prometheus.yml &&
    promtool test rules alerts_test.yml) || status=1
else
  echo "check-deploy: promtool not found (apt-get install -y --no-install-recommends prometheus); skipping the promtool checks" >&2
  status=1
fi

if command -v python3 >/dev/null; then
  python3 -m json.tool deploy/grafana/msgrouter-dashboard.json >/dev/null || status=1
fi

if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml --profile observability --profile demo config --quiet || status=1
else
  echo "check-deploy: no docker compose; docker-compose.yml is checked by go test ./test/e2e -run TestCompose" >&2
fi

if [ "$status" -eq 0 ]; then echo "check-deploy: OK"; fi
exit "$status"
