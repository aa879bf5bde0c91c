#!/usr/bin/env bash
# Installs the registry clients and test tools the Shoal test suite needs.
#
#   test/services/tools.sh install          # everything (apt + go)
#   test/services/tools.sh install apt      # Debian packages only
#   test/services/tools.sh install go       # Go tools only (into .tools/bin)
#   test/services/tools.sh versions         # print what is pinned / installed
#
# Idempotent: a tool already present at the pinned version is skipped.
#
# Debian packages (apt, needs root or sudo):
#   skopeo, containerd, runc (containerd's runtime; ctr pulls need it installed),
#   docker-registry (the CNCF distribution registry, /usr/bin/docker-registry),
#   umoci, jq, prometheus (the metrics e2e spec runs it; its service is never started),
#   chromium (the browser the console specs drive through playwright-core; nothing
#   downloads a browser from elsewhere).
#   Package services are kept from starting during the install (policy-rc.d) and
#   the docker-registry service is never left listening on :5000, which Shoal's
#   own proxy uses.
#
# Go tools (GOBIN=<repo>/.tools/bin, GOFLAGS=-mod=mod, GOTOOLCHAIN=local):
#   crane            github.com/google/go-containerregistry/cmd/crane  @ CRANE_VERSION
#   oras             oras.land/oras/cmd/oras                           @ ORAS_VERSION
#   conformance.test the OCI distribution-spec conformance suite (Ginkgo test
#                    binary built with `go test -c`)              @ CONFORMANCE_VERSION
#   jaeger           Jaeger all-in-one, the OTLP receiver of the traces e2e spec
#                    (github.com/jaegertracing/jaeger/cmd/jaeger) @ JAEGER_VERSION
#   The default Go module and build caches are used on purpose: CI runs in a
#   fresh clone (empty .tools/) on the same machine, so caches under .tools/
#   would be thrown away every run, while ~/.cache/go-build makes the rebuild
#   take seconds. Set GOMODCACHE / GOCACHE to override.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
TOOLS_DIR="$ROOT/.tools"
BIN_DIR="$TOOLS_DIR/bin"

# --- pinned versions -------------------------------------------------------
# Newest versions the Go module proxy serves here (see the workplace package
# list go-partial.tsv). oras v1.3.6 needs go >= 1.26.7; crane v0.22.1 go >= 1.25.
CRANE_MODULE="github.com/google/go-containerregistry"
CRANE_VERSION="v0.22.1"
ORAS_MODULE="oras.land/oras"
ORAS_VERSION="v1.3.6"

# The conformance suite is the nested module .../distribution-spec/conformance.
# The repository only has plain vX.Y.Z tags (no conformance/vX.Y.Z tags), so the
# module exists only as pseudo-versions, and the proxy serves just two of them:
#   v0.0.0-20231101194043-f2182352d4cc  commit f2182352 (2023-11-01), between
#       v1.1.0-rc3 and v1.1.0-rc4: the classic Ginkgo suite configured with
#       OCI_ROOT_URL / OCI_NAMESPACE / OCI_TEST_* / OCI_REPORT_DIR.   <- used
#   v0.0.0-20260831232431-97274622c111  the 2026 redesign (main-program tool,
#       OCI_REGISTRY / OCI_TLS / OCI_RESULTS_DIR, go >= 1.24).
# The v1.1.0 / v1.1.1 release commits (0f98d91, a139cc4) are refused by the
# proxy ("This module version is not available"). Compared with v1.1.0, this
# commit lacks: the referrers-to-a-missing-subject spec, the annotation pull-up
# checks on the referrers index, "blob DELETE may answer 405/404" in content
# management, and the teardown fixes that tolerate 404; it still checks the
# Docker-Content-Digest header on referrers responses if one is sent.
CONFORMANCE_MODULE="github.com/opencontainers/distribution-spec/conformance"
CONFORMANCE_VERSION="v0.0.0-20231101194043-f2182352d4cc"

# Jaeger's go.mod has a replace directive, so `go install pkg@version` refuses it: it is
# built from a copy of the module (kept under .tools/src/jaeger so rebuilds reuse the Go build
# cache); .tools/bin/.jaeger.version records the version built.
JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_VERSION="v1.75.0"

APT_PACKAGES=(skopeo containerd runc docker-registry umoci jq prometheus chromium iptables)
RESERVED_PORT=5000

log() { printf '[tools] %s\n' "$*"; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [WHAT]

Commands:
  install [all|apt|go]   install the test tools (default: all); idempotent
  versions               show pinned versions and what is installed
  -h, --help             this help

apt installs (Debian): ${APT_PACKAGES[*]}
go  installs into $BIN_DIR:
  crane            $CRANE_MODULE/cmd/crane@$CRANE_VERSION
  oras             $ORAS_MODULE/cmd/oras@$ORAS_VERSION
  conformance.test $CONFORMANCE_MODULE@$CONFORMANCE_VERSION (go test -c)

Put the Go tools on PATH with:  export PATH="$BIN_DIR:\$PATH"
Run the conformance suite with: test/services/conformance.sh [REGISTRY_URL]
EOF
}

# --- apt ----------------------------------------------------------------------
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) for: $*"
  fi
}

pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# PIDs of processes listening on TCP port $1 (any address).
listeners_on_port() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

# After a fresh install of docker-registry: make sure its service neither runs
# now nor starts at boot (it listens on :5000). On every run: if a
# docker-registry process still listens on :5000, say so (and stop it when we
# installed the package in this run).
ensure_port_free_of_package_services() {
  local fresh="$1" port="$RESERVED_PORT" pid comm killed=0
  if [ "$fresh" = 1 ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      log "apt: disabling the docker-registry systemd service (it would listen on :$port)"
      as_root systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/docker-registry ] && command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
  fi
  if ! command -v ss >/dev/null 2>&1; then
    log "apt: 'ss' not found; cannot check port $port"
    return
  fi
  for pid in $(listeners_on_port "$port"); do
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [ "$fresh" = 1 ] && [ "$comm" = "docker-registry" ]; then
      log "apt: stopping package service $comm (pid $pid) listening on :$port"
      as_root kill "$pid" || true
      killed=1
    else
      log "apt: WARNING: port $port is in use by ${comm:-?} (pid $pid); Shoal's proxy needs it"
    fi
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -n "$(listeners_on_port "$port")" ] || { log "apt: port $port is free"; return; }
    [ "$killed" = 1 ] || return 0
    sleep 0.5
  done
  log "apt: WARNING: port $port is still in use"
}

install_apt() {
  command -v dpkg-query >/dev/null 2>&1 || die "apt: not a Debian/Ubuntu system (no dpkg-query)"
  local missing=() p fresh_registry=0
  for p in "${APT_PACKAGES[@]}"; do
    if pkg_installed "$p"; then
      log "apt: $p $(dpkg-query -W -f='${Version}' "$p") already installed"
    else
      missing+=("$p")
    fi
  done

  if [ "${#missing[@]}" -gt 0 ]; then
    # Keep maintainer scripts from starting services (docker-registry would
    # bind :5000, containerd would start a daemon). Only if the host has no
    # policy of its own; removed again afterwards.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
      as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
      created_policy=1
      # shellcheck disable=SC2064
      trap "as_root rm -f $policy" EXIT
    fi
    case " ${missing[*]} " in *" docker-registry "*) fresh_registry=1 ;; esac
    log "apt: installing ${missing[*]}"
    log "apt: apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Use-Pty=0 "${missing[@]}"
    if [ "$created_policy" -eq 1 ]; then
      as_root rm -f "$policy"
      trap - EXIT
    fi
    for p in "${missing[@]}"; do
      pkg_installed "$p" || die "apt: $p did not install"
      log "apt: $p $(dpkg-query -W -f='${Version}' "$p") installed"
    done
  fi
  ensure_port_free_of_package_services "$fresh_registry"
  log "apt: done"
}

# --- go -----------------------------------------------------------------------
go_env() {
  export GOBIN="$BIN_DIR" GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
}

# True if the Go binary $1 was built from module $2 at version $3.
go_bin_has_module() {
  [ -x "$1" ] || return 1
  go version -m "$1" 2>/dev/null | awk -v m="$2" -v v="$3" '
    ($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

go_install_tool() { # name module pkg version
  local name="$1" module="$2" pkg="$3" version="$4"
  if go_bin_has_module "$BIN_DIR/$name" "$module" "$version"; then
    log "go: $name $version already installed"
    return
  fi
  log "go: installing $name ($pkg@$version)"
  (cd "$TOOLS_DIR" && go install "$pkg@$version")
  go_bin_has_module "$BIN_DIR/$name" "$module" "$version" || die "go: $name did not install at $version"
  log "go: $name $version installed"
}

install_conformance() {
  local out="$BIN_DIR/conformance.test" ldflag="-X $CONFORMANCE_MODULE.Version=$CONFORMANCE_VERSION"
  if [ -x "$out" ] && go version -m "$out" 2>/dev/null | grep -qF -- "$ldflag"; then
    log "go: conformance.test $CONFORMANCE_VERSION already installed"
    return
  fi
  log "go: downloading $CONFORMANCE_MODULE@$CONFORMANCE_VERSION"
  local json dir work
  json="$(cd "$TOOLS_DIR" && go mod download -json "$CONFORMANCE_MODULE@$CONFORMANCE_VERSION")" \
    || die "go: go mod download failed: $json"
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "go: no module directory in: $json"; fi
  # The module cache is read-only: build from a writable copy.
  work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-conformance.XXXXXX")"
  cp -R "$dir/." "$work/"
  chmod -R u+w "$work"
  log "go: building conformance.test (go test -c)"
  (cd "$work" && go test -c -ldflags "$ldflag" -o "$work/conformance.test" .)
  mv -f "$work/conformance.test" "$out"
  rm -rf "$work"
  log "go: conformance.test $CONFORMANCE_VERSION installed"
}

install_jaeger() {
  local out="$BIN_DIR/jaeger" stamp="$BIN_DIR/.jaeger.version" src="$TOOLS_DIR/src/jaeger"
  if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$JAEGER_VERSION" ]; then
    log "go: jaeger $JAEGER_VERSION already installed"
    return
  fi
  log "go: downloading $JAEGER_MODULE@$JAEGER_VERSION"
  local json dir
  json="$(cd "$TOOLS_DIR" && go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION")" \
    || die "go: go mod download failed: $json"
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "go: no module directory in: $json"; fi
  rm -rf "$src"
  mkdir -p "$src"
  cp -R "$dir/." "$src/"
  chmod -R u+w "$src"
  log "go: building jaeger (a few minutes the first time)"
  # With cgo when a C compiler is there (Go's own default), unlike the small tools: its build
  # cache is then the one a plain `go build` of the module fills.
  local cgo=0
  if command -v gcc >/dev/null 2>&1; then cgo=1; fi
  (cd "$src" && CGO_ENABLED="$cgo" go build -o "$out" ./cmd/jaeger)
  printf '%s\n' "$JAEGER_VERSION" >"$stamp"
  log "go: jaeger $JAEGER_VERSION installed"
}

install_go() {
  command -v go >/dev/null 2>&1 || die "go: 'go' not found on PATH"
  mkdir -p "$BIN_DIR"
  go_env
  log "go: using $(go version) (GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE))"
  go_install_tool crane "$CRANE_MODULE" "$CRANE_MODULE/cmd/crane" "$CRANE_VERSION"
  go_install_tool oras "$ORAS_MODULE" "$ORAS_MODULE/cmd/oras" "$ORAS_VERSION"
  install_conformance
  install_jaeger
  log "go: done (binaries in $BIN_DIR)"
}

show_versions() {
  local p
  echo "pinned: crane $CRANE_VERSION, oras $ORAS_VERSION, conformance $CONFORMANCE_VERSION, jaeger $JAEGER_VERSION"
  for p in "${APT_PACKAGES[@]}"; do
    printf '%-16s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo 'not installed')"
  done
  for p in crane oras; do
    if [ -x "$BIN_DIR/$p" ]; then
      printf '%-16s %s\n' "$p" "$(go version -m "$BIN_DIR/$p" 2>/dev/null | awk '$1=="mod"{print $3}')"
    else
      printf '%-16s %s\n' "$p" "not installed"
    fi
  done
  if [ -x "$BIN_DIR/conformance.test" ]; then
    printf '%-16s %s\n' conformance.test \
      "$(go version -m "$BIN_DIR/conformance.test" 2>/dev/null | grep -o 'Version=[^ "]*' | cut -d= -f2)"
  else
    printf '%-16s %s\n' conformance.test "not installed"
  fi
  printf '%-16s %s\n' jaeger "$(cat "$BIN_DIR/.jaeger.version" 2>/dev/null || echo 'not installed')"
}

main() {
  case "${1:-}" in
    -h|--help|help|"") usage; [ -n "${1:-}" ] || exit 2 ;;
    install)
      local what="${2:-all}" t0 t1
      case "$what" in
        all|apt|go) ;;
        *) usage >&2; die "unknown install target: $what" ;;
      esac
      if [ "$what" = all ] || [ "$what" = apt ]; then
        t0=$SECONDS; install_apt; t1=$SECONDS
        log "apt: took $((t1 - t0))s"
      fi
      if [ "$what" = all ] || [ "$what" = go ]; then
        t0=$SECONDS; install_go; t1=$SECONDS
        log "go: took $((t1 - t0))s"
      fi
      ;;
    versions) show_versions ;;
    *) usage >&2; die "unknown command: $1" ;;
  esac
}

main "$@"
