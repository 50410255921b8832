#!/bin/sh
# A throwaway PostgreSQL server for tests: Debian's package (apt-get install postgresql), a cluster initdb'd into
# DIR/data, listening on the Unix socket DIR/.s.PGSQL.PORT only (no TCP unless a third argument gives a TCP
# port), user "qrag" with trust authentication. initdb refuses to run as root: as root, DIR is given to the
# `postgres` user and the server runs as it.
#
# usage: tests/postgres.sh start DIR [TCP_PORT] | stop DIR | kill DIR
#   start: initdb when DIR/data is absent, then start and wait until it accepts connections;
#   stop:  a clean (fast) shutdown; kill: an immediate one (as after a crash: recovery replays the WAL).
# Exit 77 when PostgreSQL is not installed (callers skip), 0 on success, else pg_ctl's failure.
set -eu
cmd=$1
dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL is not installed (deploy/install-deps.sh installs Debian's postgresql)" >&2
  exit 77
fi
run() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $cmd in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    if [ ! -d "$dir/data" ]; then
      run "$bin/initdb" -D "$dir/data" -U qrag -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    listen="''"
    if [ $# -ge 3 ]; then listen=127.0.0.1; fi
    port=${3:-5432}
    run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=$listen -k $dir -p $port -c fsync=on" start >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
    ;;
  stop) run "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ;;
  kill) run "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null ;;
  *) echo "usage: $0 start DIR [TCP_PORT] | stop DIR | kill DIR" >&2; exit 2 ;;
esac
