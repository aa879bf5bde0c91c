#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft, combined broker+controller) for tests.
# No Docker, no tarball: the jars come from Maven Central via test/services/kafka/pom.xml.
# Run `test/services/kafka.sh --help` for usage.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
# shellcheck source=test/services/lib/ports.sh
source "$SCRIPT_DIR/lib/ports.sh"

POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_TOOLS_DIR="${KAFKA_TOOLS_DIR:-$REPO_ROOT/.tools/kafka}"
LIB_DIR="$KAFKA_TOOLS_DIR/lib"
# One node's own files (config, data, log, pid); another directory runs another node.
KAFKA_RUN_DIR="${KAFKA_RUN_DIR:-$KAFKA_TOOLS_DIR}"
CONF_DIR="$KAFKA_RUN_DIR/conf"
DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_RUN_DIR/data}"
LOG_FILE="$KAFKA_RUN_DIR/broker.log"
PID_FILE="$KAFKA_RUN_DIR/broker.pid"
PORT_FILE="$KAFKA_RUN_DIR/broker.port"
STAMP_FILE="$LIB_DIR/.pom.sha256"

HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-$(checkout_port 9)}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$(checkout_port 10)}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
# C1-only JIT: ~2 s faster start and ~30 MB less RSS on a 2-core box; set
# KAFKA_JVM_OPTS to something without it when measuring broker throughput.
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1}"
# A cluster of several nodes (each started with its own KAFKA_RUN_DIR and ports): this node's
# id, every controller as id@host:port, one cluster id for all, internal topics' replicas,
# and extra server.properties lines.
KAFKA_NODE_ID="${KAFKA_NODE_ID:-1}"
KAFKA_VOTERS="${KAFKA_VOTERS:-$KAFKA_NODE_ID@$HOST:$KAFKA_CONTROLLER_PORT}"
KAFKA_CLUSTER_ID="${KAFKA_CLUSTER_ID:-}"
KAFKA_REPLICATION="${KAFKA_REPLICATION:-1}"
KAFKA_EXTRA_CONFIG="${KAFKA_EXTRA_CONFIG:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

usage() {
  cat <<EOF
Usage: test/services/kafka.sh <command> [--fresh]

Runs a real single-node Apache Kafka broker (KRaft mode, broker+controller in
one JVM) on $HOST for tests, from jars fetched with Maven (no Docker).

Commands:
  install          Copy the broker jars into .tools/kafka/lib with
                   'mvn dependency:copy-dependencies' (skipped when the jars for
                   the current pom are already there).
  start [--fresh]  Install if needed, format the data dir if it is not formatted
                   (or wipe and re-format it with --fresh), start the broker in the
                   background and wait until it answers client requests.
                   Prints KAFKA_BROKERS=$HOST:<port> on stdout (all other output
                   goes to stderr, so: eval "\$(test/services/kafka.sh start)").
                   Exits 0 when it is already running.
  stop             SIGTERM, wait up to \$KAFKA_STOP_TIMEOUT s, then SIGKILL.
                   Exits 0 when it is not running.
  restart          stop, then start WITHOUT wiping data (topics and records survive).
  status           Say whether it is running (exit 0) or not (exit 3).
  -h, --help       This text.

Environment:
  KAFKA_PORT             client (PLAINTEXT) port      [block+9]
  KAFKA_CONTROLLER_PORT  KRaft controller port        [block+10]
  KAFKA_DATA_DIR         log/metadata dir              [.tools/kafka/data]
  KAFKA_HEAP_OPTS        JVM heap flags                [-Xms128m -Xmx512m]
  KAFKA_JVM_OPTS         other JVM flags  [-XX:+UseG1GC -XX:MaxGCPauseMillis=20
                                           -XX:TieredStopAtLevel=1]
                         (drop TieredStopAtLevel=1 when benchmarking the broker)
  KAFKA_START_TIMEOUT    seconds to wait for readiness [90]
  KAFKA_STOP_TIMEOUT     seconds before SIGKILL        [30]
  KAFKA_TOOLS_DIR        work dir (lib, conf, log, pid) [.tools/kafka]
  KAFKA_RUN_DIR          this node's conf, data, log, pid [KAFKA_TOOLS_DIR]
  KAFKA_NODE_ID, KAFKA_VOTERS, KAFKA_CLUSTER_ID, KAFKA_REPLICATION, KAFKA_EXTRA_CONFIG
                         a node of a multi-node cluster: its id, every controller
                         (id@host:port,...), the shared cluster id, replicas of the
                         internal topics, extra server.properties lines [one node]
  JAVA_HOME              Java 17+ to run the broker   [java on PATH]

Files: pom $POM
       log $LOG_FILE (root logger at WARN; previous run: broker.log.1)
       pid $PID_FILE
EOF
}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH"; }

pom_version() {
  # <kafka.version>X</kafka.version> from the pom
  sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM" | head -n 1
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

is_installed() {
  local v
  v="$(pom_version)"
  [[ -n $v && -f "$LIB_DIR/kafka_2.13-$v.jar" && -f $STAMP_FILE ]] &&
    [[ "$(cat "$STAMP_FILE")" == "$(pom_hash)" ]]
}

cmd_install() {
  [[ -f $POM ]] || die "missing $POM"
  if is_installed; then
    log "jars already installed in $LIB_DIR (kafka $(pom_version)); skipping"
    return 0
  fi
  need mvn
  log "installing kafka $(pom_version) jars into $LIB_DIR (mvn dependency:copy-dependencies) ..."
  local t0=$SECONDS tmp="$LIB_DIR.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # (sed strips the stray ANSI resets that Maven 3.8 prints even with -B -q)
  if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed $'s/\x1b\\[[0-9;]*m//g' >&2; then
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (see output above)"
  fi
  [[ -f "$tmp/kafka_2.13-$(pom_version).jar" ]] || {
    rm -rf "$tmp"
    die "kafka_2.13-$(pom_version).jar was not copied"
  }
  pom_hash >"$tmp/.pom.sha256"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  log "installed $(find "$LIB_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1)) in $((SECONDS - t0))s"
}

# ---- process helpers ---------------------------------------------------------

# kill -0 also succeeds for a zombie (exited, not yet reaped): treat that as dead.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ ${stat:0:1} != Z ]]
}

# Prints the pid of our broker if it is running, else returns 1.
running_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n $pid ]] || return 1
  alive "$pid" || return 1
  # guard against pid reuse: it must be a JVM running kafka.Kafka with our config
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $CONF_DIR/server.properties" ||
    return 1
  printf '%s\n' "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

kafka_major() {
  local jar
  jar="$(find "$LIB_DIR" -maxdepth 1 -name 'kafka_2.13-*.jar' | head -n 1)"
  [[ -n $jar ]] || die "no kafka_2.13 jar in $LIB_DIR"
  jar="${jar##*/kafka_2.13-}"
  printf '%s\n' "${jar%%.*}"
}

# Metadata v4 request over raw TCP; succeeds when the broker answers and lists
# at least one broker (i.e. it is registered and serving client requests).
probe_metadata() {
  local resp
  { exec 3<>"/dev/tcp/$HOST/$KAFKA_PORT"; } 2>/dev/null || return 1
  # size=20 | api_key=3 (Metadata) | api_version=4 | correlation_id=0x4b414b41
  # | client_id="probe" | topics=null(-1) | allow_auto_topic_creation=false
  printf '\x00\x00\x00\x14\x00\x03\x00\x04\x4b\x41\x4b\x41\x00\x05probe\xff\xff\xff\xff\x00' >&3 || {
    exec 3>&-
    return 1
  }
  # response: size(4) correlation_id(4) throttle_time_ms(4) brokers_count(4)
  resp="$(timeout 2 head -c 16 <&3 | od -An -tx1 | tr -d ' \n')" || true
  exec 3>&-
  [[ ${#resp} -eq 32 && ${resp:8:8} == 4b414b41 ]] || return 1
  ((16#${resp:24:8} >= 1))
}

write_config() {
  mkdir -p "$CONF_DIR"
  cat >"$CONF_DIR/server.properties" <<EOF
# generated by test/services/kafka.sh -- edits are overwritten on start
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_VOTERS
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=1
default.replication.factor=$KAFKA_REPLICATION
min.insync.replicas=1
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=$KAFKA_REPLICATION
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$KAFKA_REPLICATION
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
$KAFKA_EXTRA_CONFIG
EOF
  if (($(kafka_major) >= 4)); then
    cat >>"$CONF_DIR/server.properties" <<'EOF'
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    # Kafka 4.x logs through log4j2; the shipped YAML config would need
    # jackson-dataformat-yaml, so use the properties format.
    cat >"$CONF_DIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
EOF
    LOG_OPTS=(-Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties")
  else
    # Kafka 3.x logs through slf4j-reload4j (log4j 1.x properties format).
    cat >"$CONF_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=WARN, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
EOF
    LOG_OPTS=(-Dlog4j.configuration="file:$CONF_DIR/log4j.properties")
  fi
}

storage_tool_class() {
  # zip entry names are stored uncompressed, so grep finds them in the jar
  if LC_ALL=C grep -qaF 'kafka/tools/StorageTool.class' "$LIB_DIR"/kafka_2.13-*.jar; then
    echo kafka.tools.StorageTool
  else
    echo org.apache.kafka.tools.StorageTool
  fi
}

format_storage() {
  local cluster_id
  # 16 random bytes, base64url without padding = a Kafka Uuid string (22 chars)
  cluster_id="${KAFKA_CLUSTER_ID:-$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')}"
  # only ever wipe a dir that is ours: under KAFKA_TOOLS_DIR, a formatted Kafka
  # dir, or empty (KAFKA_DATA_DIR may point anywhere)
  if [[ -d $DATA_DIR && $DATA_DIR != "$KAFKA_TOOLS_DIR"/* && $DATA_DIR != "$KAFKA_RUN_DIR"/* &&
    ! -f "$DATA_DIR/meta.properties" ]] &&
    [[ -n "$(ls -A "$DATA_DIR")" ]]; then
    die "refusing to wipe $DATA_DIR: not empty and not a Kafka data dir"
  fi
  rm -rf "$DATA_DIR"
  mkdir -p "$DATA_DIR"
  log "formatting $DATA_DIR (cluster id $cluster_id)"
  # --cluster-id=ID, not -t ID: the parser takes an id that starts with '-' (1 in 64) for an option
  "$JAVA" "${LOG_OPTS[@]}" -Xmx256m -XX:TieredStopAtLevel=1 -cp "$LIB_DIR/*" "$(storage_tool_class)" \
    format --cluster-id="$cluster_id" -c "$CONF_DIR/server.properties" >>"$LOG_FILE" 2>&1 || {
    tail -n 30 "$LOG_FILE" >&2 || true
    die "formatting the storage failed"
  }
}

abort_start() {
  log "interrupted; killing the starting broker"
  local p
  p="$(tr -dc '0-9' 2>/dev/null <"$PID_FILE" || true)"
  if [[ -n $p ]]; then kill -KILL "$p" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  exit 130
}

print_brokers() { printf 'KAFKA_BROKERS=%s:%s\n' "$HOST" "$1"; }

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
    print_brokers "$(cat "$PORT_FILE" 2>/dev/null || echo "$KAFKA_PORT")"
    return 0
  fi

  cmd_install
  need "$JAVA"
  if port_in_use "$KAFKA_PORT"; then
    die "port $HOST:$KAFKA_PORT is already in use by another process (set KAFKA_PORT)"
  fi
  if port_in_use "$KAFKA_CONTROLLER_PORT"; then
    die "port $HOST:$KAFKA_CONTROLLER_PORT is already in use by another process (set KAFKA_CONTROLLER_PORT)"
  fi

  mkdir -p "$KAFKA_TOOLS_DIR" "$KAFKA_RUN_DIR"
  rm -f "$PID_FILE" "$PORT_FILE"
  # keep the previous run's log (useful after a restart), start a new one
  if [[ -s $LOG_FILE ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
  : >"$LOG_FILE"
  LOG_OPTS=()
  write_config

  if [[ -n $fresh || ! -f "$DATA_DIR/meta.properties" ]]; then
    format_storage
  else
    log "keeping existing data in $DATA_DIR (use --fresh to wipe it)"
  fi

  local t0=$SECONDS
  local -a heap jopts jvm
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  read -r -a jopts <<<"$KAFKA_JVM_OPTS"
  jvm=("$JAVA" "${heap[@]}" "${jopts[@]}" -Djava.awt.headless=true
    "${LOG_OPTS[@]}" -Dkafka.logs.dir="$KAFKA_RUN_DIR"
    -cp "$LIB_DIR/*" kafka.Kafka "$CONF_DIR/server.properties")
  # The child writes its own pid (so it is right even if setsid forks), then
  # becomes the JVM. setsid keeps the broker out of the caller's process group
  # (a Ctrl-C aimed at a later command does not hit it); all stdio is redirected
  # so a caller reading our stdout (execSync, $(...)) does not hang on it.
  local -a detach=()
  if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
  # shellcheck disable=SC2016 # $$ and $@ belong to the child shell
  "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" "${jvm[@]}" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  log "starting broker on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), log $LOG_FILE"

  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  pid=""
  # interrupted while waiting: do not leave a half-started broker behind
  trap 'abort_start' INT TERM
  while ((SECONDS < deadline)); do
    if [[ -z $pid && -s $PID_FILE ]]; then pid="$(tr -dc '0-9' <"$PID_FILE")"; fi
    if [[ -n $pid ]] && ! alive "$pid"; then
      log "broker process $pid exited during startup; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "kafka failed to start"
    fi
    # Ready = a real Metadata request is answered and lists this broker. The
    # broker starts its client listener only at the very end of startup (after
    # it is unfenced), right before logging "Kafka Server started".
    if probe_metadata; then
      echo "$KAFKA_PORT" >"$PORT_FILE"
      trap - INT TERM
      log "ready in $((SECONDS - t0))s (pid $pid)"
      print_brokers "$KAFKA_PORT"
      return 0
    fi
    sleep 0.5
  done

  log "broker not ready after ${KAFKA_START_TIMEOUT}s; last lines of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2 || true
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PID_FILE"
  die "kafka did not become ready within ${KAFKA_START_TIMEOUT}s"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE" "$PORT_FILE"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if alive "$pid"; then
    log "still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then die "pid $pid survived SIGKILL"; fi
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    local port
    port="$(cat "$PORT_FILE" 2>/dev/null || echo "$KAFKA_PORT")"
    log "running (pid $pid) on $HOST:$port, data $DATA_DIR"
    print_brokers "$port"
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
