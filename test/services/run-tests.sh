#!/usr/bin/env bash
# `npm test`: builds, installs and starts what the tests need, then runs jest over every tier.
#   - registry clients and the OCI conformance suite (test/services/tools.sh install; skips
#     what is already installed),
#   - the storage backends' servers (test/services/backends.sh: versitygw for S3,
#     fake-gcs-server, nginx with WebDAV, the CNCF registry with htpasswd), left running,
#   - a real Kafka broker on loopback (test/services/kafka.sh start), unless KAFKA_BROKERS
#     names one already. The broker is left running for the next run; stop it with
#     `test/services/kafka.sh stop`.
# Extra arguments go to jest (e.g. `npm test -- adapters/eventlog`). The e2e project runs twice:
# with security on (the default) and off (SHOAL_TEST_SECURITY=off, test/fixtures/security.ts).
set -euo pipefail
cd "$(dirname "$0")/../.."
# This checkout's block of test-server ports (test/services/lib/ports.sh), for the specs too.
REPO_ROOT="$(pwd -P)"
# shellcheck source=test/services/lib/ports.sh
source test/services/lib/ports.sh
SHOAL_TEST_PORT_BASE="$(checkout_port_base)"
export SHOAL_TEST_PORT_BASE

npm run --silent build
bash test/services/tools.sh install
bash test/services/backends.sh install >&2
servers=$(bash test/services/backends.sh start)
while IFS='=' read -r name value; do
  if [[ "$name" =~ ^[A-Z_]+$ ]]; then export "$name=$value"; fi
done <<<"$servers"
if [ -z "${KAFKA_BROKERS:-}" ]; then
  KAFKA_BROKERS=$(bash test/services/kafka.sh start | sed -n 's/^KAFKA_BROKERS=//p')
  export KAFKA_BROKERS
fi
echo "test dependencies ready: KAFKA_BROKERS=$KAFKA_BROKERS" >&2
npx jest --selectProjects unit int e2e "$@"
# The e2e suites run with security on above (the default of test/fixtures/security.ts: every
# role requires cluster identities), and here again with it off, as `shoal dev` runs.
echo "e2e suites again with SHOAL_TEST_SECURITY=off" >&2
SHOAL_TEST_SECURITY=off exec npx jest --selectProjects e2e --passWithNoTests "$@"
