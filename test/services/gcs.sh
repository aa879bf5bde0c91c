#!/usr/bin/env bash
# Google Cloud Storage emulator (fsouza/fake-gcs-server) for the gcs BlobStore tests.
# No Docker: the server is built from the Go module proxy into .tools/bin.
# Run `test/services/gcs.sh --help` for usage.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
# shellcheck source=test/services/lib/ports.sh
source "$SCRIPT_DIR/lib/ports.sh"

# Newest release the Go module proxy serves here; needs go >= 1.26 (v1.55.x: go >= 1.25.8).
FAKE_GCS_MODULE="github.com/fsouza/fake-gcs-server"
FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"

BIN_DIR="$REPO_ROOT/.tools/bin"
BIN="$BIN_DIR/fake-gcs-server"
STAMP_FILE="$BIN_DIR/.fake-gcs-server.version"
GCS_TOOLS_DIR="${GCS_TOOLS_DIR:-$REPO_ROOT/.tools/gcs}"
DATA_DIR="${GCS_DATA_DIR:-$GCS_TOOLS_DIR/data}"
LOG_FILE="$GCS_TOOLS_DIR/server.log"
PID_FILE="$GCS_TOOLS_DIR/server.pid"

HOST=127.0.0.1
GCS_PORT="${GCS_PORT:-$(checkout_port 2)}"
GCS_START_TIMEOUT="${GCS_START_TIMEOUT:-30}"
GCS_STOP_TIMEOUT="${GCS_STOP_TIMEOUT:-10}"
URL="http://$HOST:$GCS_PORT"

usage() {
  cat <<EOF
Usage: test/services/gcs.sh <command>

Runs fake-gcs-server ($FAKE_GCS_MODULE@$FAKE_GCS_VERSION), a Google Cloud
Storage JSON API emulator, on $URL for tests, from a binary built with
'go install' (no Docker).

Commands:
  install      Build the server into $BIN with go install
               (GOFLAGS=-mod=mod GOTOOLCHAIN=local); skipped when the binary of the
               pinned version is there.
  start        Install if needed, start the server in the background (plain HTTP,
               filesystem backend under the data dir, kept across restarts) and wait
               until /_internal/healthcheck answers. Prints GCS_ENDPOINT=$URL on
               stdout (all other output goes to stderr, so:
               eval "\$(test/services/gcs.sh start)"). Exits 0 when already running.
  stop         SIGTERM, wait up to \$GCS_STOP_TIMEOUT s, then SIGKILL. Exits 0 when
               not running.
  restart      stop, then start (buckets and objects survive).
  status       Say whether it is running (exit 0) or not (exit 3).
  -h, --help   This text.

Environment:
  GCS_PORT           HTTP port                           [block+2]
  GCS_DATA_DIR       filesystem backend root             [.tools/gcs/data]
  GCS_TOOLS_DIR      work dir (log, pid)                 [.tools/gcs]
  GCS_START_TIMEOUT  seconds to wait for readiness       [30]
  GCS_STOP_TIMEOUT   seconds before SIGKILL              [10]
  FAKE_GCS_VERSION   module version to build             [$FAKE_GCS_VERSION]

Files: binary $BIN
       log    $LOG_FILE
       pid    $PID_FILE
EOF
}

SCRIPT_NAME=gcs.sh
# shellcheck source=test/services/lib/daemon.sh
source "$SCRIPT_DIR/lib/daemon.sh"

# Installed = the binary is there, the stamp names the pinned version and the binary's
# build info agrees (a stale binary copied in by hand does not count).
is_installed() {
  [[ -x $BIN && -f $STAMP_FILE ]] || return 1
  [[ "$(cat "$STAMP_FILE")" == "$FAKE_GCS_MODULE@$FAKE_GCS_VERSION" ]] || return 1
  go version -m "$BIN" 2>/dev/null |
    awk -v m="$FAKE_GCS_MODULE" -v v="$FAKE_GCS_VERSION" '$1 == "mod" && $2 == m && $3 == v { f = 1 } END { exit !f }'
}

cmd_install() {
  need go
  if is_installed; then
    log "fake-gcs-server $FAKE_GCS_VERSION already installed in $BIN_DIR; skipping"
    return 0
  fi
  mkdir -p "$BIN_DIR"
  rm -f "$STAMP_FILE"
  log "building $FAKE_GCS_MODULE@$FAKE_GCS_VERSION with $(go version | cut -d' ' -f3) ..."
  local t0=$SECONDS
  # The default module and build caches are used on purpose (see tools.sh): a fresh
  # clone then rebuilds in seconds.
  (cd "$REPO_ROOT/.tools" &&
    GOBIN="$BIN_DIR" GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 \
      go install "$FAKE_GCS_MODULE@$FAKE_GCS_VERSION" >&2) || die "go install failed"
  printf '%s\n' "$FAKE_GCS_MODULE@$FAKE_GCS_VERSION" >"$STAMP_FILE"
  is_installed || die "fake-gcs-server did not install at $FAKE_GCS_VERSION"
  log "installed in $((SECONDS - t0))s"
}

# ---- process helpers ---------------------------------------------------------

# Prints the pid of our server (our binary serving our port) if it is running, else returns 1.
running_pid() { pid_from "$PID_FILE" -- "$BIN .*-port $GCS_PORT "; }

healthy() { curl -fsS -m 2 -o /dev/null "$URL/_internal/healthcheck" 2>/dev/null; }

print_endpoint() { printf 'GCS_ENDPOINT=%s\n' "$URL"; }

abort_start() {
  log "interrupted; killing the starting server"
  local p
  p="$(tr -dc '0-9' 2>/dev/null <"$PID_FILE" || true)"
  if [[ -n $p ]]; then kill -KILL "$p" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  exit 130
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"
    print_endpoint
    return 0
  fi
  cmd_install
  need curl
  if port_in_use "$GCS_PORT"; then
    die "port $HOST:$GCS_PORT is already in use by another process (set GCS_PORT)"
  fi
  mkdir -p "$GCS_TOOLS_DIR" "$DATA_DIR"
  rm -f "$PID_FILE"
  if [[ -s $LOG_FILE ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
  : >"$LOG_FILE"

  # -external-url is what the server puts in the Location of a resumable upload: it must be
  # the URL clients use (the default, 0.0.0.0, breaks resumable uploads).
  local -a server=("$BIN" -scheme http -host "$HOST" -port "$GCS_PORT"
    -external-url "$URL" -public-host "$HOST:$GCS_PORT"
    -backend filesystem -filesystem-root "$DATA_DIR" -log-level warn)
  local -a detach=()
  if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
  # The child writes its own pid, then becomes the server; setsid keeps it out of the
  # caller's process group, and all stdio is redirected so `$(gcs.sh start)` returns.
  # shellcheck disable=SC2016 # $$ and $@ belong to the child shell
  nohup "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" "${server[@]}" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  log "starting fake-gcs-server on $URL (data $DATA_DIR), log $LOG_FILE"

  local t0=$SECONDS deadline=$((SECONDS + GCS_START_TIMEOUT))
  pid=""
  trap 'abort_start' INT TERM
  while ((SECONDS < deadline)); do
    if [[ -z $pid && -s $PID_FILE ]]; then pid="$(tr -dc '0-9' <"$PID_FILE")"; fi
    if [[ -n $pid ]] && ! alive "$pid"; then
      log "server process $pid exited during startup; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "fake-gcs-server failed to start"
    fi
    if [[ -n $pid ]] && healthy; then
      trap - INT TERM
      log "ready in $((SECONDS - t0))s (pid $pid)"
      print_endpoint
      return 0
    fi
    sleep 0.2
  done
  log "server not ready after ${GCS_START_TIMEOUT}s; last lines of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 || true
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  die "fake-gcs-server did not become ready within ${GCS_START_TIMEOUT}s"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping fake-gcs-server (pid $pid)"
  stop_pid "$pid" "$GCS_STOP_TIMEOUT"
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    log "running (pid $pid) on $URL, data $DATA_DIR"
    print_endpoint
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
