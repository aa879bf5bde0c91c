#!/usr/bin/env bash
# The CNCF distribution registry (Debian's docker-registry) as the "upstream" a Shoal
# `registry` backend pulls through from. Two instances on loopback, each with its own storage:
#   start        htpasswd (basic) auth on 127.0.0.1:<block+6>
#   start-token  token auth on 127.0.0.1:<block+7>: the registry answers with a Bearer challenge
#                whose realm is a token issuer the test runs itself (it signs JWTs with the
#                key and certificate this script generates with openssl).
# Run `test/services/upstream-registry.sh --help` for usage.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
# shellcheck source=test/services/lib/ports.sh
source "$SCRIPT_DIR/lib/ports.sh"

WORK_DIR="${UPSTREAM_REGISTRY_DIR:-$REPO_ROOT/.tools/upstream-registry}"
HTPASSWD_FILE="$WORK_DIR/htpasswd"
TOKEN_DIR="$WORK_DIR/token"
TOKEN_KEY="$TOKEN_DIR/key.pem"
TOKEN_CERT="$TOKEN_DIR/cert.pem"

HOST=127.0.0.1
BASIC_PORT="${UPSTREAM_REGISTRY_PORT:-$(checkout_port 6)}"
TOKEN_PORT="${UPSTREAM_REGISTRY_TOKEN_PORT:-$(checkout_port 7)}"
TOKEN_REALM="${UPSTREAM_TOKEN_REALM:-http://$HOST:$(checkout_port 8)/token}"
TOKEN_SERVICE=shoal-upstream
TOKEN_ISSUER=shoal-test-issuer
USERNAME=shoal
PASSWORD=shoal-upstream
START_TIMEOUT="${UPSTREAM_REGISTRY_START_TIMEOUT:-30}"
STOP_TIMEOUT=10
REGISTRY_BIN="${REGISTRY_BIN:-/usr/bin/docker-registry}"

usage() {
  cat <<EOF
Usage: test/services/upstream-registry.sh <command> [--fresh]

Runs the real CNCF distribution registry ($REGISTRY_BIN) on $HOST as the upstream
registry of Shoal's read-only 'registry' blob store backend. Filesystem storage under
$WORK_DIR, delete enabled, user '$USERNAME' with password '$PASSWORD'.

Commands:
  install              Make sure docker-registry, openssl and a bcrypt hasher (htpasswd
                       from apt's apache2-utils, else Python's crypt) are there; write the
                       htpasswd file and the token signing key and certificate.
  start [--fresh]      Basic (htpasswd) auth on $HOST:$BASIC_PORT. Prints
                       UPSTREAM_REGISTRY=http://$HOST:$BASIC_PORT on stdout (all else goes to
                       stderr: eval "\$(test/services/upstream-registry.sh start)").
                       --fresh wipes its storage first. Exits 0 when already running.
  start-token [--fresh]
                       Token auth on $HOST:$TOKEN_PORT: clients are sent to the realm
                       $TOKEN_REALM, a token issuer the caller runs
                       (test/fixtures/upstreamRegistry.ts has one). Prints
                       UPSTREAM_REGISTRY_TOKEN, UPSTREAM_TOKEN_REALM, UPSTREAM_TOKEN_SERVICE,
                       UPSTREAM_TOKEN_ISSUER, UPSTREAM_TOKEN_KEY and UPSTREAM_TOKEN_CERT.
  stop [basic|token]   Stops both instances, or the one named (SIGTERM, then SIGKILL
                       after ${STOP_TIMEOUT}s). Exits 0 when not running.
  status               Prints the variables of the running instances; exit 0 when the basic
                       one runs, 3 when it does not.
  -h, --help           This text.

Environment:
  UPSTREAM_REGISTRY_PORT        basic-auth port                [block+6]
  UPSTREAM_REGISTRY_TOKEN_PORT  token-auth port                [block+7]
  UPSTREAM_TOKEN_REALM          token issuer URL               [http://$HOST:<block+8>/token]
  UPSTREAM_REGISTRY_DIR         work dir (config, data, logs)  [.tools/upstream-registry]
  UPSTREAM_REGISTRY_START_TIMEOUT  seconds to wait for readiness [30]
EOF
}

SCRIPT_NAME=upstream-registry.sh
# shellcheck source=test/services/lib/daemon.sh
source "$SCRIPT_DIR/lib/daemon.sh"

# ---- install -----------------------------------------------------------------

apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo=(sudo)
  fi
  log "installing $* with apt-get"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
    { "${sudo[@]}" apt-get update -q >&2 &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
}

# A bcrypt htpasswd line for $USERNAME. The registry checks it on every request, so a low
# cost (5) keeps requests fast; this is a test password.
bcrypt_line() {
  if ! command -v htpasswd >/dev/null 2>&1; then
    apt_install apache2-utils || log "could not install apache2-utils; trying Python's crypt"
  fi
  if command -v htpasswd >/dev/null 2>&1; then
    htpasswd -nbB -C 5 "$USERNAME" "$PASSWORD" | head -n 1
    return
  fi
  command -v python3 >/dev/null 2>&1 || die "no htpasswd and no python3 to make a bcrypt hash"
  python3 -W ignore - "$USERNAME" "$PASSWORD" <<'EOF'
import crypt, sys
line = crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))
if not line or not line.startswith("$2"):
    sys.exit("this Python's crypt cannot make bcrypt hashes")
print(f"{sys.argv[1]}:{line}")
EOF
}

cmd_install() {
  if [[ ! -x $REGISTRY_BIN ]]; then
    log "$REGISTRY_BIN is missing; installing the test tools' apt packages"
    bash "$SCRIPT_DIR/tools.sh" install apt >&2 || die "tools.sh install apt failed"
    [[ -x $REGISTRY_BIN ]] || die "$REGISTRY_BIN is still missing"
  fi
  command -v openssl >/dev/null 2>&1 || apt_install openssl || die "openssl is missing"
  mkdir -p "$WORK_DIR" "$TOKEN_DIR"
  if [[ ! -s $HTPASSWD_FILE ]]; then
    local line
    line="$(bcrypt_line)" || die "could not make the htpasswd entry"
    printf '%s\n' "$line" >"$HTPASSWD_FILE.tmp"
    mv "$HTPASSWD_FILE.tmp" "$HTPASSWD_FILE"
    log "wrote $HTPASSWD_FILE (user $USERNAME)"
  fi
  if [[ ! -s $TOKEN_KEY || ! -s $TOKEN_CERT ]]; then
    # A self-signed RSA certificate: the issuer puts it in each JWT's x5c header and the
    # registry trusts it as the root of that chain (rootcertbundle).
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -subj "/CN=$TOKEN_ISSUER" -keyout "$TOKEN_KEY.tmp" -out "$TOKEN_CERT.tmp" 2>/dev/null ||
      die "openssl could not make the token signing certificate"
    mv "$TOKEN_KEY.tmp" "$TOKEN_KEY"
    mv "$TOKEN_CERT.tmp" "$TOKEN_CERT"
    log "wrote the token signing key and certificate in $TOKEN_DIR"
  fi
}

# ---- one instance --------------------------------------------------------------

# Sets the paths of instance $1 (basic|token).
instance() {
  KIND="$1"
  INSTANCE_DIR="$WORK_DIR/$KIND"
  CONFIG_FILE="$INSTANCE_DIR/config.yml"
  DATA_DIR="$INSTANCE_DIR/data"
  LOG_FILE="$INSTANCE_DIR/registry.log"
  PID_FILE="$INSTANCE_DIR/registry.pid"
  if [[ $KIND == basic ]]; then PORT="$BASIC_PORT"; else PORT="$TOKEN_PORT"; fi
}

# Prints the pid of the registry serving our config if it is running, else returns 1.
running_pid() { pid_from "$PID_FILE" -F "serve $CONFIG_FILE"; }

# GET /v2/ answers 401 (auth required) or 200 once the registry serves requests.
probe() {
  local status
  status="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$HOST:$PORT/v2/")" || return 1
  [[ $status == 401 || $status == 200 ]]
}

print_vars() {
  if [[ $KIND == basic ]]; then
    printf 'UPSTREAM_REGISTRY=http://%s:%s\n' "$HOST" "$PORT"
  else
    printf 'UPSTREAM_REGISTRY_TOKEN=http://%s:%s\n' "$HOST" "$PORT"
    printf 'UPSTREAM_TOKEN_REALM=%s\n' "$(cat "$INSTANCE_DIR/realm" 2>/dev/null || echo "$TOKEN_REALM")"
    printf 'UPSTREAM_TOKEN_SERVICE=%s\n' "$TOKEN_SERVICE"
    printf 'UPSTREAM_TOKEN_ISSUER=%s\n' "$TOKEN_ISSUER"
    printf 'UPSTREAM_TOKEN_KEY=%s\n' "$TOKEN_KEY"
    printf 'UPSTREAM_TOKEN_CERT=%s\n' "$TOKEN_CERT"
  fi
}

write_config() {
  local auth
  if [[ $KIND == basic ]]; then
    auth="  htpasswd:
    realm: shoal-upstream
    path: $HTPASSWD_FILE"
  else
    auth="  token:
    realm: $TOKEN_REALM
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER
    rootcertbundle: $TOKEN_CERT"
    printf '%s\n' "$TOKEN_REALM" >"$INSTANCE_DIR/realm"
  fi
  cat >"$CONFIG_FILE" <<EOF
# generated by test/services/upstream-registry.sh -- edits are overwritten on start
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DATA_DIR
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $HOST:$PORT
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  headers:
    X-Content-Type-Options: [nosniff]
auth:
$auth
health:
  storagedriver:
    enabled: false
EOF
}

start_instance() {
  local fresh="$1" pid
  if pid="$(running_pid)"; then
    log "$KIND registry already running (pid $pid)${fresh:+; --fresh ignored (stop first)}"
    print_vars
    return 0
  fi
  cmd_install
  port_in_use "$PORT" && die "port $HOST:$PORT is already in use by another process"
  mkdir -p "$INSTANCE_DIR"
  if [[ -n $fresh ]]; then rm -rf "$DATA_DIR"; fi
  mkdir -p "$DATA_DIR"
  rm -f "$PID_FILE"
  if [[ -s $LOG_FILE ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
  : >"$LOG_FILE"
  write_config

  local -a detach=()
  if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
  # The child writes its own pid, then becomes the registry; all stdio is redirected so a
  # caller reading our stdout ($(...), execFileSync) does not wait on it.
  # shellcheck disable=SC2016 # $$ and $@ belong to the child shell
  "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$REGISTRY_BIN" serve "$CONFIG_FILE" </dev/null >>"$LOG_FILE" 2>&1 &
  log "starting the $KIND registry on $HOST:$PORT, log $LOG_FILE"

  local deadline=$((SECONDS + START_TIMEOUT)) t0=$SECONDS
  pid=""
  while ((SECONDS < deadline)); do
    if [[ -z $pid && -s $PID_FILE ]]; then pid="$(tr -dc '0-9' <"$PID_FILE")"; fi
    if [[ -n $pid ]] && ! alive "$pid"; then
      tail -n 30 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "the $KIND registry exited during startup"
    fi
    if probe; then
      if [[ -z $pid && -s $PID_FILE ]]; then pid="$(tr -dc '0-9' <"$PID_FILE")"; fi
      log "ready in $((SECONDS - t0))s (pid $pid)"
      print_vars
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$LOG_FILE" >&2 || true
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  die "the $KIND registry did not answer within ${START_TIMEOUT}s"
}

stop_instance() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping the $KIND registry (pid $pid)"
  stop_pid "$pid" "$STOP_TIMEOUT" TERM KILL 5
  rm -f "$PID_FILE"
}

parse_fresh() {
  FRESH=""
  local arg
  for arg in "$@"; do
    case "$arg" in
    --fresh) FRESH=1 ;;
    *) die "unknown argument '$arg'" ;;
    esac
  done
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  install) cmd_install ;;
  start)
    parse_fresh "$@"
    instance basic
    start_instance "$FRESH"
    ;;
  start-token)
    parse_fresh "$@"
    instance token
    start_instance "$FRESH"
    ;;
  stop)
    local which="${1:-all}" kind
    case "$which" in
    all) set -- basic token ;;
    basic | token) set -- "$which" ;;
    *) die "stop: unknown instance '$which' (want basic or token)" ;;
    esac
    for kind in "$@"; do
      instance "$kind"
      stop_instance
    done
    log "stopped"
    ;;
  status)
    local rc=3
    instance token
    if running_pid >/dev/null; then print_vars; fi
    instance basic
    if running_pid >/dev/null; then
      print_vars
      rc=0
    fi
    if ((rc != 0)); then log "the basic registry is not running"; fi
    return "$rc"
    ;;
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
