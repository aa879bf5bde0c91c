# shellcheck shell=bash
# Shared by the test servers' scripts (s3.sh, gcs.sh, http.sh, upstream-registry.sh): logging,
# process checks and stopping a daemon. The sourcing script sets SCRIPT_NAME (its log prefix)
# and HOST (the address its server listens on) before calling these.

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH"; }

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# kill -0 also succeeds for a zombie (exited, not yet reaped): treat that as dead.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ ${stat:0:1} != Z ]]
}

# pid_from PID_FILE GREP_ARGS...: prints the pid the file names when that process is alive and
# its command line matches `grep -q GREP_ARGS...` (a guard against pid reuse), else returns 1.
pid_from() {
  local file="$1"
  shift
  [[ -f $file ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n $pid ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$@" || return 1
  printf '%s\n' "$pid"
}

# stop_pid PID TIMEOUT [SIGNAL [LAST_SIGNAL [LAST_TIMEOUT]]]: sends SIGNAL (TERM), waits up to
# TIMEOUT seconds, then sends LAST_SIGNAL (KILL) and waits up to LAST_TIMEOUT (10) more.
stop_pid() {
  local pid="$1" timeout="$2" first="${3:-TERM}" last="${4:-KILL}" last_timeout="${5:-10}"
  kill -"$first" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if alive "$pid"; then
    log "still alive after ${timeout}s; sending SIG$last"
    kill -"$last" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + last_timeout))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then die "pid $pid survived SIG$last"; fi
  fi
}
