#!/usr/bin/env bash
# A real NetBox 4.x on loopback, for tests/cmdb/test_netbox_live.py (make test-cmdb).
#
#   tests/cmdb/netbox.sh up       install what is missing, start PostgreSQL, Redis, NetBox; fresh database
#   tests/cmdb/netbox.sh down     stop exactly what `up` started (pidfiles / pg_ctl), nothing by name
#   tests/cmdb/netbox.sh status
#
# NetBox comes from PyPI (package `netbox`) into a venv under the cache; PostgreSQL
# and Redis are Debian's packages, started by hand (apt starts no service here, and
# initdb refuses to run as root, so the cluster belongs to the `postgres` user).
# `migrate` takes minutes: the migrated, empty database is dumped once per NetBox
# version to $CACHE/netbox-<version>.sql and restored (seconds) on every later `up`.
#
# Environment:
#   NETBOX_VERSION   NetBox release from PyPI             (default 4.7.3)
#   NETBOX_PYTHON    Python >= 3.12 for NetBox            (default: python3.13/3.12 on PATH, else pyenv's)
#   NETBOX_DIR       runtime dir: data, logs, pidfiles    (default <repo>/.lab-netbox)
#   NETBOX_PORT      NetBox HTTP port on 127.0.0.1        (default 18800; PostgreSQL +1, Redis +2)
#   SRE_ROLLOUT_CACHE  cache outside the repo             (default ~/.cache/sre-rollout)
# `up` writes $NETBOX_DIR/netbox.json: {"url", "version", "token_v1", "token_v2"}.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
NETBOX_VERSION=${NETBOX_VERSION:-4.7.3}
NETBOX_DIR=${NETBOX_DIR:-$REPO/.lab-netbox}
NETBOX_PORT=${NETBOX_PORT:-18800}
PG_PORT=$((NETBOX_PORT + 1))
REDIS_PORT=$((NETBOX_PORT + 2))
CACHE=${SRE_ROLLOUT_CACHE:-$HOME/.cache/sre-rollout}
VENV=$CACHE/netbox-$NETBOX_VERSION/venv
DUMP=$CACHE/netbox-$NETBOX_VERSION.sql
ROOT=$NETBOX_DIR/root            # NETBOX_ROOT: conf/configuration.py, media, static
PGDATA=$NETBOX_DIR/pgdata
PGSOCK=$NETBOX_DIR/pgsock
RUN=$NETBOX_DIR/run
LOGS=$NETBOX_DIR/logs

say() { echo "netbox.sh: $*"; }
die() { echo "netbox.sh: $*" >&2; exit 1; }

pg_bin() {
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -1)
  [[ -n "$dir" && -x "$dir/pg_ctl" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  echo "$dir"
}

as_postgres() { runuser -u postgres -- "$@"; }

# --------------------------------------------------------------------------- install

find_python() {
  if [[ -n "${NETBOX_PYTHON:-}" ]]; then
    echo "$NETBOX_PYTHON"; return
  fi
  local candidate
  for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python \
                   /root/.pyenv/versions/3.12.1/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"; return
    fi
  done
  die "NetBox $NETBOX_VERSION needs Python >= 3.12 and none was found (looked for python3.13, python3.12 on PATH and pyenv's 3.12+). Install one (e.g. pyenv install 3.12) or set NETBOX_PYTHON=/path/to/python3.12"
}

install_debian() {
  local missing=() p status
  for p in postgresql redis-server curl jq; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  say "installing ${missing[*]} (Debian)"
  [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]} (and to run initdb as postgres)"
  local created=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then   # keep the packages from starting system-wide daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && created=1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || {
    [[ $created -eq 1 ]] && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
  [[ $created -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
  return 0
}

install_netbox() {
  if [[ -f "$VENV/.installed" ]]; then return; fi
  local py
  py=$(find_python)
  say "installing NetBox $NETBOX_VERSION from PyPI into $VENV (with $py)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "netbox==$NETBOX_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/netbox" version >/dev/null 2>&1 || die "pip install netbox==$NETBOX_VERSION failed (see above)"
  touch "$VENV/.installed"
}

# --------------------------------------------------------------------------- services

write_config() {
  mkdir -p "$ROOT/conf" "$ROOT/media" "$RUN" "$LOGS"
  local secret pepper
  [[ -f "$NETBOX_DIR/secret" ]] || "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$NETBOX_DIR/secret"
  [[ -f "$NETBOX_DIR/pepper" ]] || "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$NETBOX_DIR/pepper"
  secret=$(cat "$NETBOX_DIR/secret")
  pepper=$(cat "$NETBOX_DIR/pepper")
  cat > "$ROOT/conf/configuration.py" <<EOF
# Written by tests/cmdb/netbox.sh: a throwaway NetBox on loopback for the CMDB tests.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "netbox", "USER": "netbox",
                         "PASSWORD": "netbox", "HOST": "127.0.0.1", "PORT": "$PG_PORT", "CONN_MAX_AGE": 300}}
REDIS = {
    "tasks": {"HOST": "127.0.0.1", "PORT": $REDIS_PORT, "USERNAME": "", "PASSWORD": "", "DATABASE": 0, "SSL": False},
    "caching": {"HOST": "127.0.0.1", "PORT": $REDIS_PORT, "USERNAME": "", "PASSWORD": "", "DATABASE": 1, "SSL": False},
}
SECRET_KEY = "$secret"
API_TOKEN_PEPPERS = {1: "$pepper"}
CENSUS_REPORTING_ENABLED = False
RELEASE_CHECK_URL = None
LOGIN_REQUIRED = True
MAX_PAGE_SIZE = 1000
EOF
}

start_postgres() {
  local bin
  bin=$(pg_bin)
  if [[ -f "$PGDATA/postmaster.pid" ]] && as_postgres "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    say "PostgreSQL already running"; return
  fi
  mkdir -p "$NETBOX_DIR"
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    say "initdb $PGDATA (as postgres)"
    install -d -o postgres -g postgres -m 700 "$PGDATA"
    as_postgres "$bin/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 \
      || die "initdb failed: $(tail -5 "$LOGS/initdb.log")"
  fi
  install -d -o postgres -g postgres -m 755 "$PGSOCK"
  touch "$LOGS/postgres.log" && chown postgres "$LOGS/postgres.log"
  as_postgres "$bin/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGSOCK -c fsync=off -c full_page_writes=off" start >/dev/null \
    || die "PostgreSQL did not start: $(tail -5 "$LOGS/postgres.log")"
  say "PostgreSQL on 127.0.0.1:$PG_PORT"
}

psql_admin() { PGOPTIONS="-c client_min_messages=warning" as_postgres "$(pg_bin)/psql" -h "$PGSOCK" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }

start_redis() {
  if [[ -f "$RUN/redis.pid" ]] && kill -0 "$(cat "$RUN/redis.pid")" 2>/dev/null; then
    say "Redis already running"; return
  fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$RUN/redis.pid" \
    --dir "$NETBOX_DIR" --save "" --appendonly no --logfile "$LOGS/redis.log" >/dev/null
  for _ in $(seq 50); do [[ -s "$RUN/redis.pid" ]] && break; sleep 0.1; done
  [[ -s "$RUN/redis.pid" ]] || die "Redis did not start: $(tail -5 "$LOGS/redis.log")"
  say "Redis on 127.0.0.1:$REDIS_PORT"
}

netbox_cmd() { NETBOX_ROOT="$ROOT" "$VENV/bin/netbox" "$@"; }

fresh_database() {
  psql_admin -c "DROP DATABASE IF EXISTS netbox" -c "DROP ROLE IF EXISTS netbox" \
             -c "CREATE ROLE netbox LOGIN PASSWORD 'netbox'" -c "CREATE DATABASE netbox OWNER netbox"
  if [[ -s "$DUMP" ]]; then
    say "restoring the migrated database from $DUMP"
    # as netbox, so that it owns what it restores (the dump carries no owners)
    PGOPTIONS="-c client_min_messages=warning" as_postgres "$(pg_bin)/psql" -h "$PGSOCK" -p "$PG_PORT" -U netbox \
      -d netbox -v ON_ERROR_STOP=1 -q --single-transaction <"$DUMP" >"$LOGS/restore.log" 2>&1 || die "restore failed: $(tail -5 "$LOGS/restore.log")"
    return
  fi
  say "migrating a new database (NetBox $NETBOX_VERSION; minutes, once per version)"
  netbox_cmd migrate --no-input >"$LOGS/migrate.log" 2>&1 || die "migrate failed: $(tail -20 "$LOGS/migrate.log")"
  mkdir -p "$CACHE"
  as_postgres "$(pg_bin)/pg_dump" -h "$PGSOCK" -p "$PG_PORT" -U postgres --no-owner --role=netbox netbox \
    > "$DUMP.tmp" && mv "$DUMP.tmp" "$DUMP"
  say "cached the migrated database in $DUMP"
}

make_tokens() {
  netbox_cmd shell --no-imports -c '
import json, secrets
from users.models import Token, User
user, _ = User.objects.get_or_create(username="sre-rollout-test", defaults={"is_superuser": True})
v1 = Token(user=user, version=1, token=secrets.token_hex(20), write_enabled=True)
v1.save()
v2 = Token(user=user, version=2, write_enabled=True, pepper_id=1)
v2.save()
print(json.dumps({"token_v1": v1.token, "token_v2": v2.get_auth_header_prefix().split(" ", 1)[1] + v2.token}))
' 2>"$LOGS/tokens.log" | tail -1 > "$RUN/tokens.json" || die "token creation failed: $(tail -5 "$LOGS/tokens.log")"
}

start_netbox() {
  stop_netbox
  # setsid: NetBox leads its own process group, so `down` stops it and only it; no descriptor of ours kept open
  NETBOX_ROOT="$ROOT" setsid "$VENV/bin/netbox" runserver "127.0.0.1:$NETBOX_PORT" --noreload --insecure \
    </dev/null >"$LOGS/netbox.log" 2>&1 &
  echo $! > "$RUN/netbox.pid"
  for _ in $(seq 240); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$NETBOX_PORT/api/status/" -H "Authorization: Token $(jq -r .token_v1 "$RUN/tokens.json")" 2>/dev/null; then
      say "NetBox $NETBOX_VERSION on http://127.0.0.1:$NETBOX_PORT"; return
    fi
    kill -0 "$(cat "$RUN/netbox.pid")" 2>/dev/null || die "NetBox exited: $(tail -20 "$LOGS/netbox.log")"
    sleep 0.5
  done
  die "NetBox did not answer within 120 s: $(tail -20 "$LOGS/netbox.log")"
}

stop_netbox() {
  if [[ -f "$RUN/netbox.pid" ]]; then
    local pid
    pid=$(cat "$RUN/netbox.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$RUN/netbox.pid"
  fi
}

# --------------------------------------------------------------------------- commands

up() {
  install_debian
  install_netbox
  mkdir -p "$NETBOX_DIR" "$RUN" "$LOGS"
  write_config
  start_postgres
  start_redis
  stop_netbox            # no NetBox on the database while it is replaced
  fresh_database
  make_tokens
  start_netbox
  jq -n --arg url "http://127.0.0.1:$NETBOX_PORT" --arg version "$NETBOX_VERSION" \
        --slurpfile t "$RUN/tokens.json" '{url: $url, version: $version} + $t[0]' > "$NETBOX_DIR/netbox.json"
  say "described in $NETBOX_DIR/netbox.json"
}

down() {
  stop_netbox
  if [[ -f "$RUN/redis.pid" ]]; then
    kill -TERM "$(cat "$RUN/redis.pid")" 2>/dev/null || true
    rm -f "$RUN/redis.pid"
  fi
  if [[ -f "$PGDATA/postmaster.pid" ]]; then
    as_postgres "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -f "$NETBOX_DIR/netbox.json"
  say "stopped"
}

status() {
  local s=0
  if [[ -f "$RUN/netbox.pid" ]] && kill -0 "$(cat "$RUN/netbox.pid")" 2>/dev/null; then say "NetBox running"; else say "NetBox stopped"; s=1; fi
  if [[ -f "$RUN/redis.pid" ]] && kill -0 "$(cat "$RUN/redis.pid")" 2>/dev/null; then say "Redis running"; else say "Redis stopped"; s=1; fi
  if [[ -d "$PGDATA" ]] && as_postgres "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    say "PostgreSQL running"
  else
    say "PostgreSQL stopped"; s=1
  fi
  return $s
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
