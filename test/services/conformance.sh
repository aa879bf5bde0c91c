#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (.tools/bin/conformance.test,
# built by test/services/tools.sh install go) against a registry.
#
#   test/services/conformance.sh [REGISTRY_URL] [-- extra conformance.test flags]
#
# REGISTRY_URL defaults to http://127.0.0.1:5000. All four workflows run (pull,
# push, content discovery, content management). Each run uses fresh random
# repositories: OCI_NAMESPACE=conformance/<random> and
# OCI_CROSSMOUNT_NAMESPACE=conformance/<random>-mount (the cross-repository
# mount target), unless those variables are already set.
#
# Reports (junit.xml, report.html from the suite, plus output.log) go to
# $OCI_REPORT_DIR, default <repo>/.tools/reports/conformance.
# Prints "conformance: N passed, N failed, N skipped" and exits non-zero if any
# spec failed (or the suite could not run).
#
# Other variables the suite reads are passed through if set: OCI_USERNAME,
# OCI_PASSWORD, OCI_AUTH_SCOPE, OCI_DEBUG, OCI_DELETE_MANIFEST_BEFORE_BLOBS,
# OCI_AUTOMATIC_CROSSMOUNT, OCI_SKIP_EMPTY_LAYER_PUSH_TEST, OCI_BLOB_DIGEST,
# OCI_MANIFEST_DIGEST, OCI_TAG_NAME, OCI_TAG_LIST, OCI_HIDE_SKIPPED_WORKFLOWS.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
BIN="$ROOT/.tools/bin/conformance.test"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

URL="http://127.0.0.1:5000"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) echo "conformance.sh: unknown option $1 (put suite flags after --)" >&2; exit 2 ;;
    *) URL="$1"; shift ;;
  esac
done
URL="${URL%/}"

if [ ! -x "$BIN" ]; then
  echo "conformance.sh: $BIN not found; run: test/services/tools.sh install go" >&2
  exit 2
fi

# Fail fast, with a clear message, if nothing answers at the registry URL.
if command -v curl >/dev/null 2>&1; then
  code="$(curl -sk -o /dev/null -m 10 -w '%{http_code}' "$URL/v2/" || true)"
  if [ "$code" = "000" ]; then
    echo "conformance.sh: no registry answers at $URL/v2/" >&2
    exit 2
  fi
fi

REPORT_DIR="${OCI_REPORT_DIR:-$ROOT/.tools/reports/conformance}"
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
rm -f "$REPORT_DIR/junit.xml" "$REPORT_DIR/report.html" "$REPORT_DIR/output.log"

RAND="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
export OCI_ROOT_URL="$URL"
export OCI_NAMESPACE="${OCI_NAMESPACE:-conformance/$RAND}"
export OCI_CROSSMOUNT_NAMESPACE="${OCI_CROSSMOUNT_NAMESPACE:-conformance/$RAND-mount}"
export OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1
export OCI_HIDE_SKIPPED_WORKFLOWS="${OCI_HIDE_SKIPPED_WORKFLOWS:-0}"
export OCI_DEBUG="${OCI_DEBUG:-0}"
export OCI_REPORT_DIR="$REPORT_DIR"

COLOR=()
[ -t 1 ] || COLOR=(-ginkgo.no-color)

echo "conformance: $OCI_ROOT_URL namespace=$OCI_NAMESPACE crossmount=$OCI_CROSSMOUNT_NAMESPACE"
echo "conformance: reports in $REPORT_DIR"

set +e
(cd "$REPORT_DIR" && exec "$BIN" "${COLOR[@]}" "${EXTRA[@]}") 2>&1 | tee "$REPORT_DIR/output.log"
rc="${PIPESTATUS[0]}"
set -e

JUNIT="$REPORT_DIR/junit.xml"
if [ ! -s "$JUNIT" ]; then
  echo "conformance: no junit.xml written (suite did not run?), exit code $rc" >&2
  exit $(( rc == 0 ? 1 : rc ))
fi

# Counts from the JUnit report: one <testcase ... status="passed|failed|skipped|
# pending|panicked|interrupted|timedout|aborted"> per spec ("[It] ..."), plus
# suite nodes such as "[ReportAfterSuite] ...", which count only if they fail.
# Specs of disabled workflows and RunOnlyIf() specs are "skipped".
read -r passed failed skipped < <(awk '
  match($0, /<testcase name="[^"]*"/) {
    name = substr($0, RSTART + 16, RLENGTH - 17)
    st = ""
    if (match($0, /status="[a-z]*"/)) st = substr($0, RSTART + 8, RLENGTH - 9)
    spec = (name ~ /^\[It\]/)
    if (st == "passed") { if (spec) p++ }
    else if (st == "skipped" || st == "pending") { if (spec) s++ }
    else f++
  }
  END { printf "%d %d %d\n", p, f, s }' "$JUNIT")

if [ "$failed" -gt 0 ]; then
  echo "conformance: failed specs:"
  awk '
    match($0, /<testcase name="[^"]*"/) {
      name = substr($0, RSTART + 16, RLENGTH - 17)
      st = ""
      if (match($0, /status="[a-z]*"/)) st = substr($0, RSTART + 8, RLENGTH - 9)
      if (st != "passed" && st != "skipped" && st != "pending") print "  - " name " (" st ")"
    }' "$JUNIT" | sed 's/&#34;/"/g; s/&#39;/'"'"'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\&/g'
fi
echo "conformance: $passed passed, $failed failed, $skipped skipped"

if [ "$failed" -gt 0 ]; then
  exit 1
fi
exit "$rc"
