#!/usr/bin/env bash
# Installs the Debian packages the project runs on, when they are missing:
#   redis-server  (unless REDIS_URL points at a Redis already; tests always need the binary)
#   PostgreSQL    (initdb/pg_ctl, unless DATABASE_URL is set; tests always need them)
#   PostGIS       (postgresql-15-postgis-3: the geography columns, nearby search and alert audience;
#                  same rule as PostgreSQL, since migration 0007 runs CREATE EXTENSION postgis)
#   docker-compose (tests: it validates docker-compose.yml without an engine)
#   wrk            (tests and benchmarks: the HTTP load generator)
#   chromium, fonts-noto-color-emoji (tests: the web chat's browser tests, with the bot's emoji)
#   prometheus     (tests: its promtool checks and unit-tests the alert rules in ops/)
#   fonts-noto-core, fonts-dejavu-core, libraqm0 (always: the deal card image's text in any script,
#                  right-to-left titles laid out by libraqm; domain/images.py finds the fonts by path)
# Usage: scripts/ensure-system-packages.sh run|test|bench
set -euo pipefail
mode=${1:-run}
need=()

have_pg() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$mode" != run ] || [ -z "${REDIS_URL:-}" ]; then need+=(redis-server); fi
fi
if ! have_pg; then
  if [ "$mode" != run ] || [ -z "${DATABASE_URL:-}" ]; then need+=(postgresql); fi
fi
have_postgis() { ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; }
if ! have_postgis; then
  if [ "$mode" != run ] || [ -z "${DATABASE_URL:-}" ]; then need+=(postgresql-15-postgis-3); fi
fi
# The deal card's fonts and Pillow's complex-script layout, in every mode (workers render cards).
dpkg -s fonts-noto-core >/dev/null 2>&1 || need+=(fonts-noto-core)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need+=(fonts-dejavu-core)
dpkg -s libraqm0 >/dev/null 2>&1 || need+=(libraqm0)
if [ "$mode" != run ]; then
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || need+=(fonts-noto-color-emoji)
  # promtool (tests/unit/test_alert_rules.py) comes with Debian's prometheus package; its server is
  # not started (policy-rc.d below), compose runs Prometheus under the `monitoring` profile.
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  # pgbench (the Postgres ceiling in the benchmarks) comes with postgresql-contrib.
  command -v pgbench >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
fi

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${need[*]}. Install them (sudo apt-get install -y ${need[*]}) and retry." >&2
  exit 1
fi
echo "Installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Don't let the packages start their own system-wide services: we start private instances.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
