#!/usr/bin/env bash
# The storage backends' test servers, all at once: an S3-compatible server (versitygw),
# fake-gcs-server, nginx with WebDAV (the http backend) and the CNCF registry with htpasswd
# auth (the registry backend's upstream). Each has its own script in this directory.
#
#   test/services/backends.sh install   # build / install every server (idempotent)
#   test/services/backends.sh start     # start them; prints S3_ENDPOINT=… GCS_ENDPOINT=… lines
#   test/services/backends.sh stop
#   test/services/backends.sh test [jest args]   # `npm run test:backends`: start, then run
#                                        # every backend's BlobStore contract and routing test
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
SERVERS=(s3.sh gcs.sh http.sh upstream-registry.sh)

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

each() {
  local command="$1"
  for script in "${SERVERS[@]}"; do bash "$SCRIPT_DIR/$script" "$command"; done
}

case "${1:-}" in
  install) each install ;;
  start) each start ;;
  stop) each stop ;;
  status) each status ;;
  test)
    shift
    each install >&2
    # Export every NAME=value line the scripts print, for the specs.
    servers=$(each start)
    while IFS='=' read -r name value; do
      if [[ "$name" =~ ^[A-Z_]+$ ]]; then export "$name=$value"; fi
    done <<<"$servers"
    cd "$ROOT"
    npm run --silent build # the e2e specs run the CLI from dist/
    exec npx jest --selectProjects int e2e --testPathPatterns \
      'adapters/blobstore/' 'services/origin/routing' 'services/origin/pullThrough' \
      'services/proxy/server/pullThrough' 'test/e2e/backends' 'test/e2e/pullThrough' "$@"
    ;;
  -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
