# shellcheck shell=bash
# Each checkout runs its own test servers on its own block of ports, so two checkouts (or a CI
# run beside a developer's tree) never collide and each `npm test` reuses only its own servers.
# The block is chosen from the checkout's path; SHOAL_TEST_PORT_BASE pins it. Blocks are 16 ports
# wide between 14000 and 19760, below the 20000+ range where end-to-end clusters pick their bases.
#
#   offset  server                           offset  server
#   0       versitygw (S3)                   6       CNCF registry, htpasswd
#   1       a private S3 for one e2e spec    7       CNCF registry, token auth
#   2       fake-gcs-server                  8       its token issuer
#   3       a private GCS for one e2e spec   9       Kafka (client)
#   4       nginx WebDAV (http)              10      Kafka (KRaft controller)
#   5       a private nginx for one spec     11      a private registry for one spec
#   12      Prometheus (metrics e2e)         13      Jaeger OTLP/HTTP (traces e2e)
#   14      Jaeger query API (traces e2e)    15      spare
# Usage: source this file after setting REPO_ROOT, then `port=$(checkout_port 9)`.
checkout_port_base() {
  if [[ -n ${SHOAL_TEST_PORT_BASE:-} ]]; then
    printf '%s\n' "$SHOAL_TEST_PORT_BASE"
    return
  fi
  local sum
  sum="$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)"
  printf '%s\n' "$((14000 + (sum % 360) * 16))"
}
checkout_port() { printf '%s\n' "$(($(checkout_port_base) + $1))"; }
