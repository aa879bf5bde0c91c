#!/usr/bin/env bash
# A plain web server (nginx from Debian, WebDAV PUT/DELETE on) for the http BlobStore tests.
# Run `test/services/http.sh --help` for usage.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
# shellcheck source=test/services/lib/ports.sh
source "$SCRIPT_DIR/lib/ports.sh"

HTTP_TOOLS_DIR="${HTTP_TOOLS_DIR:-$REPO_ROOT/.tools/http}"
DATA_DIR="$HTTP_TOOLS_DIR/data"
CONF_FILE="$HTTP_TOOLS_DIR/nginx.conf"
LOG_FILE="$HTTP_TOOLS_DIR/error.log"
PID_FILE="$HTTP_TOOLS_DIR/nginx.pid"
NGINX="${NGINX:-/usr/sbin/nginx}"
APT_PACKAGE=nginx

HOST=127.0.0.1
HTTP_PORT="${HTTP_PORT:-$(checkout_port 4)}"
HTTP_START_TIMEOUT="${HTTP_START_TIMEOUT:-20}"
HTTP_STOP_TIMEOUT="${HTTP_STOP_TIMEOUT:-10}"
URL="http://$HOST:$HTTP_PORT"

usage() {
  cat <<EOF
Usage: test/services/http.sh <command>

Runs nginx (Debian package '$APT_PACKAGE') on $URL as a plain blob web server:
files under $DATA_DIR are served at $URL/<path>, with byte
ranges, WebDAV PUT (written to a temporary file, renamed into place: atomic) and
DELETE, and a JSON directory index (autoindex_format json) for listing.

Commands:
  install      apt-get install $APT_PACKAGE (needs root or sudo) without letting the
               package start its own service; skipped when nginx is installed.
  start        Install if needed, write $CONF_FILE, start nginx in
               the background and wait until it answers. Prints
               HTTP_BACKEND_URL=$URL on stdout (all other output goes to stderr,
               so: eval "\$(test/services/http.sh start)"). Exits 0 when already running.
  stop         SIGQUIT (graceful), then SIGKILL after \$HTTP_STOP_TIMEOUT s. Exits 0
               when not running.
  restart      stop, then start (files survive).
  status       Say whether it is running (exit 0) or not (exit 3).
  -h, --help   This text.

Environment:
  HTTP_PORT           port                              [block+4]
  HTTP_TOOLS_DIR      work dir (conf, data, logs, pid)  [.tools/http]
  HTTP_START_TIMEOUT  seconds to wait for readiness     [20]
  HTTP_STOP_TIMEOUT   seconds before SIGKILL            [10]
EOF
}

SCRIPT_NAME=http.sh
# shellcheck source=test/services/lib/daemon.sh
source "$SCRIPT_DIR/lib/daemon.sh"

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) for: $*"
  fi
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

cmd_install() {
  if [[ -x $NGINX ]]; then
    log "nginx already installed ($("$NGINX" -v 2>&1 | sed 's/.*: //')); skipping"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "nginx is missing and this is not a Debian system"
  # Keep the package's maintainer scripts from starting nginx on :80 (policy-rc.d, as
  # tools.sh does); only when the host has no policy of its own, removed afterwards.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    created_policy=1
    # shellcheck disable=SC2064
    trap "as_root rm -f $policy" EXIT
  fi
  log "apt-get update"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  log "apt-get install $APT_PACKAGE"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 "$APT_PACKAGE" >&2
  if [[ $created_policy -eq 1 ]]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
  pkg_installed "$APT_PACKAGE" || die "$APT_PACKAGE did not install"
  # If the package's service started anyway (a host without policy-rc.d support), stop it
  # and keep it from starting at boot: tests run their own nginx.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now nginx.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/nginx ]]; then
    as_root /etc/init.d/nginx stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d nginx disable >/dev/null 2>&1 || true
    fi
  fi
  log "installed $APT_PACKAGE $(dpkg-query -W -f='${Version}' "$APT_PACKAGE")"
}

# ---- process helpers ---------------------------------------------------------

# Prints the pid of our nginx master (started with our config) if it is running, else returns 1.
running_pid() { pid_from "$PID_FILE" -- "-c $CONF_FILE"; }

healthy() { curl -fsS -m 2 -o /dev/null "$URL/" 2>/dev/null; }

print_url() { printf 'HTTP_BACKEND_URL=%s\n' "$URL"; }

write_config() {
  mkdir -p "$DATA_DIR" "$HTTP_TOOLS_DIR/tmp/body" "$HTTP_TOOLS_DIR/tmp/proxy" \
    "$HTTP_TOOLS_DIR/tmp/fastcgi" "$HTTP_TOOLS_DIR/tmp/uwsgi" "$HTTP_TOOLS_DIR/tmp/scgi"
  # Workers of a root master run as another user: make it the owner of the work dir, so
  # they can write the files it serves.
  local user_line=""
  if [[ "$(id -u)" -eq 0 ]]; then user_line="user $(id -un) $(id -gn);"; fi
  cat >"$CONF_FILE" <<EOF
# generated by test/services/http.sh -- edits are overwritten on start
$user_line
worker_processes 1;
daemon on;
pid $PID_FILE;
error_log $LOG_FILE warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  default_type application/octet-stream;
  # Request bodies go to temporary files on the data dir's filesystem, then a PUT renames
  # the file into place: readers see the old object or the new one, never part of one.
  client_body_temp_path $HTTP_TOOLS_DIR/tmp/body;
  proxy_temp_path $HTTP_TOOLS_DIR/tmp/proxy;
  fastcgi_temp_path $HTTP_TOOLS_DIR/tmp/fastcgi;
  uwsgi_temp_path $HTTP_TOOLS_DIR/tmp/uwsgi;
  scgi_temp_path $HTTP_TOOLS_DIR/tmp/scgi;
  client_max_body_size 0;
  server {
    listen $HOST:$HTTP_PORT;
    server_name localhost;
    root $DATA_DIR;
    location / {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      autoindex on;
      autoindex_format json;
    }
  }
}
EOF
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"
    print_url
    return 0
  fi
  cmd_install
  command -v curl >/dev/null 2>&1 || die "'curl' is not on PATH"
  if port_in_use "$HTTP_PORT"; then
    die "port $HOST:$HTTP_PORT is already in use by another process (set HTTP_PORT)"
  fi
  rm -f "$PID_FILE"
  write_config
  if [[ -s $LOG_FILE ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
  : >"$LOG_FILE"
  "$NGINX" -t -q -p "$HTTP_TOOLS_DIR/" -e "$LOG_FILE" -c "$CONF_FILE" >&2 ||
    die "nginx rejected $CONF_FILE"
  # nginx daemonizes itself (its own session, stdio closed) and writes the master's pid.
  "$NGINX" -p "$HTTP_TOOLS_DIR/" -e "$LOG_FILE" -c "$CONF_FILE" </dev/null >&2 ||
    die "nginx failed to start; see $LOG_FILE"
  log "starting nginx on $URL (root $DATA_DIR), log $LOG_FILE"
  local t0=$SECONDS deadline=$((SECONDS + HTTP_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if running_pid >/dev/null && healthy; then
      log "ready in $((SECONDS - t0))s (pid $(running_pid))"
      print_url
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  die "nginx did not become ready within ${HTTP_START_TIMEOUT}s"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping nginx (pid $pid)"
  # QUIT: a graceful shutdown of the master and its workers; TERM if that hangs.
  stop_pid "$pid" "$HTTP_STOP_TIMEOUT" QUIT TERM 5
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    log "running (pid $pid) on $URL, root $DATA_DIR"
    print_url
    return 0
  fi
  log "not running"
  return 3
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  [[ $# -eq 0 ]] || die "$cmd takes no arguments"
  case "$cmd" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart)
    cmd_stop
    cmd_start
    ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    log "unknown command '$cmd'"
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
