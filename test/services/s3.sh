#!/usr/bin/env bash
# S3-compatible server (versitygw, posix backend) for tests of the s3 BlobStore adapter.
# No Docker, no download site: versitygw is built from the Go module proxy with `go install`.
# Run `test/services/s3.sh --help` for usage.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
# shellcheck source=test/services/lib/ports.sh
source "$SCRIPT_DIR/lib/ports.sh"

VERSITYGW_MODULE=github.com/versity/versitygw
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.7.0}"

BIN_DIR="$REPO_ROOT/.tools/bin"
BIN="$BIN_DIR/versitygw"
# The version the binary was built at, written after a successful install.
STAMP_FILE="$BIN_DIR/.versitygw.version"
S3_TOOLS_DIR="${S3_TOOLS_DIR:-$REPO_ROOT/.tools/s3}"
DATA_DIR="$S3_TOOLS_DIR/data"
META_DIR="$S3_TOOLS_DIR/meta"
LOG_FILE="$S3_TOOLS_DIR/versitygw.log"
PID_FILE="$S3_TOOLS_DIR/versitygw.pid"
PORT_FILE="$S3_TOOLS_DIR/versitygw.port"

HOST=127.0.0.1
S3_PORT="${S3_PORT:-$(checkout_port 0)}"
S3_ACCESS_KEY="${S3_ACCESS_KEY:-shoal-test}"
S3_SECRET_KEY="${S3_SECRET_KEY:-shoal-test-secret}"
S3_START_TIMEOUT="${S3_START_TIMEOUT:-30}"
S3_STOP_TIMEOUT="${S3_STOP_TIMEOUT:-10}"
HEALTH_PATH=/health

usage() {
  cat <<EOF
Usage: test/services/s3.sh <command> [--fresh]

Runs a real S3-compatible server, versitygw $VERSITYGW_VERSION with its posix backend,
on $HOST for tests (built from the Go module proxy; no Docker).

Commands:
  install          Build versitygw into .tools/bin with 'go install' (skipped when
                   the binary there was built at $VERSITYGW_VERSION).
  start [--fresh]  Install if needed and start the server in the background
                   (data and sidecar metadata under .tools/s3; --fresh wipes them),
                   then wait until it answers. Prints S3_ENDPOINT=http://$HOST:<port>
                   on stdout (all other output goes to stderr, so:
                   eval "\$(test/services/s3.sh start)").
                   Exits 0 when it is already running.
  stop             SIGTERM, wait up to \$S3_STOP_TIMEOUT s, then SIGKILL.
                   Exits 0 when it is not running.
  restart          stop, then start WITHOUT wiping data (buckets and objects survive).
  status           Say whether it is running (exit 0) or not (exit 3).
  -h, --help       This text.

Environment:
  S3_PORT            listen port                       [block+0]
  S3_ACCESS_KEY      root access key id                [shoal-test]
  S3_SECRET_KEY      root secret access key            [shoal-test-secret]
  S3_START_TIMEOUT   seconds to wait for readiness     [30]
  S3_STOP_TIMEOUT    seconds before SIGKILL            [10]
  S3_TOOLS_DIR       work dir (data, meta, log, pid)   [.tools/s3]
  VERSITYGW_VERSION  module version to build           [v1.7.0]

Files: binary $BIN (version stamp $STAMP_FILE)
       log   $LOG_FILE (previous run: versitygw.log.1)
       pid   $PID_FILE
EOF
}

SCRIPT_NAME=s3.sh
# shellcheck source=test/services/lib/daemon.sh
source "$SCRIPT_DIR/lib/daemon.sh"

is_installed() {
  [[ -x $BIN && -f $STAMP_FILE && "$(cat "$STAMP_FILE")" == "$VERSITYGW_VERSION" ]] || return 1
  # The stamp says what we built; the binary's own build info must agree (when go is here).
  if command -v go >/dev/null 2>&1; then
    go version -m "$BIN" 2>/dev/null |
      awk -v m="$VERSITYGW_MODULE" -v v="$VERSITYGW_VERSION" \
        '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'
  fi
}

cmd_install() {
  if is_installed; then
    log "versitygw $VERSITYGW_VERSION already installed in $BIN_DIR; skipping"
    return 0
  fi
  need go
  mkdir -p "$BIN_DIR" "$S3_TOOLS_DIR"
  rm -f "$STAMP_FILE"
  log "building versitygw $VERSITYGW_VERSION into $BIN_DIR (go install; minutes the first time)"
  local t0=$SECONDS
  # Outside the repo: no go.mod there must steer the build.
  (cd "$S3_TOOLS_DIR" && GOBIN="$BIN_DIR" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    go install "$VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION") >&2 ||
    die "go install $VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION failed"
  [[ -x $BIN ]] || die "go install did not produce $BIN"
  printf '%s\n' "$VERSITYGW_VERSION" >"$STAMP_FILE"
  is_installed || die "$BIN is not versitygw $VERSITYGW_VERSION after the build"
  log "installed versitygw $VERSITYGW_VERSION in $((SECONDS - t0))s"
}

# ---- process helpers ---------------------------------------------------------

# Prints the pid of our server (versitygw serving our data dir) if it is running, else returns 1.
running_pid() { pid_from "$PID_FILE" -F -- "$META_DIR $DATA_DIR"; }

# Ready = the unauthenticated health endpoint answers 200.
probe() {
  local code url="http://$HOST:$1$HEALTH_PATH"
  code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null || true)"
  [[ $code == 200 ]]
}

print_endpoint() { printf 'S3_ENDPOINT=http://%s:%s\n' "$HOST" "$1"; }

abort_start() {
  log "interrupted; killing the starting server"
  local p
  p="$(tr -dc '0-9' 2>/dev/null <"$PID_FILE" || true)"
  if [[ -n $p ]]; then kill -KILL "$p" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  exit 130
}

cmd_start() {
  local fresh="" arg
  for arg in "$@"; do
    case "$arg" in
    --fresh) fresh=1 ;;
    *) die "start: unknown argument '$arg'" ;;
    esac
  done

  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid)${fresh:+; --fresh ignored (run stop first to wipe)}"
    print_endpoint "$(cat "$PORT_FILE" 2>/dev/null || echo "$S3_PORT")"
    return 0
  fi

  cmd_install
  need curl
  if port_in_use "$S3_PORT"; then
    die "port $HOST:$S3_PORT is already in use by another process (set S3_PORT)"
  fi

  mkdir -p "$S3_TOOLS_DIR"
  rm -f "$PID_FILE" "$PORT_FILE"
  if [[ -n $fresh ]]; then
    log "wiping $DATA_DIR and $META_DIR"
    rm -rf "$DATA_DIR" "$META_DIR"
  fi
  mkdir -p "$DATA_DIR" "$META_DIR"
  # keep the previous run's log (useful after a restart), start a new one
  if [[ -s $LOG_FILE ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
  : >"$LOG_FILE"

  local t0=$SECONDS
  # --sidecar keeps metadata in files, not xattrs (which overlay and tmpfs may refuse);
  # --quiet drops the per-request log lines.
  local -a server=("$BIN" --port "$HOST:$S3_PORT" --health "$HEALTH_PATH" --quiet
    posix --sidecar "$META_DIR" "$DATA_DIR")
  # The child writes its own pid (so it is right even if setsid forks), then becomes the
  # server. setsid keeps it out of the caller's process group (a Ctrl-C aimed at a later
  # command does not hit it), nohup ignores the hangup of a closing terminal, and all stdio
  # is redirected so a caller reading our stdout (execFileSync, $(...)) does not hang on it.
  local -a detach=(nohup)
  if command -v setsid >/dev/null 2>&1; then detach=(setsid nohup); fi
  # shellcheck disable=SC2016 # $$ and $@ belong to the child shell
  ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$S3_SECRET_KEY" \
    "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" "${server[@]}" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  log "starting versitygw on $HOST:$S3_PORT, data $DATA_DIR, log $LOG_FILE"

  local deadline=$((SECONDS + S3_START_TIMEOUT))
  pid=""
  # interrupted while waiting: do not leave a half-started server behind
  trap 'abort_start' INT TERM
  while ((SECONDS < deadline)); do
    if [[ -z $pid && -s $PID_FILE ]]; then pid="$(tr -dc '0-9' <"$PID_FILE")"; fi
    if [[ -n $pid ]] && ! alive "$pid"; then
      log "server process $pid exited during startup; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "versitygw failed to start"
    fi
    if [[ -n $pid ]] && probe "$S3_PORT"; then
      echo "$S3_PORT" >"$PORT_FILE"
      trap - INT TERM
      log "ready in $((SECONDS - t0))s (pid $pid)"
      print_endpoint "$S3_PORT"
      return 0
    fi
    sleep 0.2
  done

  log "server not ready after ${S3_START_TIMEOUT}s; last lines of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 || true
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  die "versitygw did not become ready within ${S3_START_TIMEOUT}s"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE" "$PORT_FILE"
    return 0
  fi
  log "stopping versitygw (pid $pid)"
  stop_pid "$pid" "$S3_STOP_TIMEOUT"
  rm -f "$PID_FILE" "$PORT_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    local port
    port="$(cat "$PORT_FILE" 2>/dev/null || echo "$S3_PORT")"
    log "running (pid $pid) on $HOST:$port, data $DATA_DIR"
    print_endpoint "$port"
    return 0
  fi
  log "not running"
  return 3
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  install)
    [[ $# -eq 0 ]] || die "install takes no arguments"
    cmd_install
    ;;
  start) cmd_start "$@" ;;
  stop)
    [[ $# -eq 0 ]] || die "stop takes no arguments"
    cmd_stop
    ;;
  restart)
    [[ $# -eq 0 ]] || die "restart takes no arguments (it never wipes data)"
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
