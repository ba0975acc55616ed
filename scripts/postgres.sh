#!/usr/bin/env bash
# A project-local PostgreSQL cluster from Debian's packages, no Docker.
#
#   scripts/postgres.sh install    apt-get install postgresql when it is missing
#   scripts/postgres.sh start      initdb once, then start on 127.0.0.1:${PG_PORT:-25432}
#   scripts/postgres.sh stop [fast|immediate]
#   scripts/postgres.sh status
#   scripts/postgres.sh url        print the DATABASE_URL of this cluster
#   scripts/postgres.sh bindir     print the folder of PostgreSQL's programs
#
# PG_DIR (default .run/postgres) and PG_PORT choose the cluster, so a second
# one can run beside it (the fault suite's, which it restarts at will).
#
# initdb refuses root, so as root the cluster belongs to the 'postgres' user.
# The database 'reviewpipe' is owned by role 'reviewpipe' (password
# 'reviewpipe', CREATEDB so tests can make a database each).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Below 32768: Linux hands out 32768-60999 as ephemeral ports for outgoing
# connections, and one of them holding the port made a start fail.
PG_PORT=${PG_PORT:-25432}
PGDIR=${PG_DIR:-$RUN_DIR/postgres}
DATA=$PGDIR/data

bindir() {
  local d
  if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/initdb ]]; then pg_config --bindir; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/postgres ]] && { echo "$d"; return; }
  done
  return 1
}

install() {
  bindir >/dev/null && return 0
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL server not found; install it: sudo apt-get install -y postgresql"
  say "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
  bindir >/dev/null || die "postgresql installed but initdb not found under /usr/lib/postgresql"
}

# as_owner CMD...: runs CMD as the cluster's owner.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  install
  local bin; bin=$(bindir)
  mkdir -p "$PGDIR"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chown postgres: "$PGDIR"
    # The owner must reach the data folder through every parent.
    local d=$PGDIR
    while [[ $d != / ]]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
  fi
  if [[ ! -f $DATA/PG_VERSION ]]; then
    say "initdb: a new PostgreSQL cluster in $DATA"
    as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 \
      || as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$PGDIR/initdb.log" 2>&1 \
      || die "initdb failed: see $PGDIR/initdb.log"
    cat >>"$DATA/postgresql.conf" <<CONF
# reviewpipe's local cluster: loopback only, sized for a 2-core machine.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDIR'
max_connections = 300
shared_buffers = 256MB
wal_buffers = 16MB
max_wal_size = 2GB
checkpoint_timeout = 15min
log_min_messages = warning
log_min_error_statement = panic
CONF
  fi
  if as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    :
  else
    if port_busy "$PG_PORT"; then
      die "port $PG_PORT is taken by another process: stop it, set PG_PORT, or set DATABASE_URL to use that PostgreSQL"
    fi
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null \
      || { tail -n 20 "$PGDIR/server.log" >&2; die "PostgreSQL did not start: see $PGDIR/server.log"; }
  fi
  for ((i = 0; i < 300; i++)); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.1
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL on port $PG_PORT is not ready (pg_isready)"
  "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reviewpipe') THEN
    CREATE ROLE reviewpipe LOGIN PASSWORD 'reviewpipe' CREATEDB;
  END IF;
END $$;
SELECT 'CREATE DATABASE reviewpipe OWNER reviewpipe'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'reviewpipe')\gexec
SQL
  url
}

stop() {
  local mode=${1:-fast} bin
  bin=$(bindir) || return 0
  [[ -f $DATA/PG_VERSION ]] || return 0
  if as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m "$mode" -w -t 60 stop >/dev/null
  fi
}

status() {
  local bin; bin=$(bindir) || { echo "postgres: not installed"; return 1; }
  if [[ -f $DATA/PG_VERSION ]] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    echo "postgres: running on 127.0.0.1:$PG_PORT"
  else
    echo "postgres: stopped"; return 1
  fi
}

url() { echo "postgres://reviewpipe:reviewpipe@127.0.0.1:$PG_PORT/reviewpipe?sslmode=disable"; }

case ${1:-} in
  install) install ;;
  start) start ;;
  stop) stop "${2:-fast}" ;;
  restart-immediate) stop immediate; start >/dev/null ;;
  status) status ;;
  url) url ;;
  bindir) bindir ;;
  *) echo "usage: $0 install|start|stop [fast|immediate]|restart-immediate|status|url|bindir" >&2; exit 2 ;;
esac
