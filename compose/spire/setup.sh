#!/bin/sh
# One-shot bootstrap of the compose demo's SPIRE, run by the spire-setup service once the SPIRE
# server is healthy:
#   1. the server's trust bundle, for the agent to trust the server;
#   2. a fresh join token for the agent, written into its configuration (one per
#      `docker compose up`: a join token attests one agent once);
#   3. the registration entries: one SPIFFE ID per workload, selected by the label
#      org.acme.workload of its container (docker workload attestor). Entries that exist are
#      kept, so running it again is harmless.
set -eu

# The paths are the spire-setup image's; compose/compose_test.go overrides them to run this
# script against a real SPIRE server outside Docker.
: "${SPIRE_SERVER:=/opt/spire/bin/spire-server}"
: "${SOCKET:=/tmp/spire-server/private/api.sock}"
: "${OUT:=/etc/spire/bootstrap}"
: "${TEMPLATE:=/etc/spire/template/agent.conf}"
NODE=spiffe://acme.internal/node/compose

spire() { "$SPIRE_SERVER" "$@" -socketPath "$SOCKET"; }

spire bundle show > "$OUT/bundle.crt.new"
mv "$OUT/bundle.crt.new" "$OUT/bundle.crt"
echo "spire-setup: trust bundle written"

token=$(spire token generate -spiffeID "$NODE" -ttl 900 | awk '$1 == "Token:" { print $2 }')
[ -n "$token" ] || { echo "spire-setup: no join token from the server" >&2; exit 1; }
sed "s/@JOIN_TOKEN@/$token/" "$TEMPLATE" > "$OUT/agent.conf.new"
mv "$OUT/agent.conf.new" "$OUT/agent.conf"
echo "spire-setup: agent configuration written with a fresh join token (node $NODE)"

register() { # SPIFFE-ID LABEL-VALUE
    if spire entry show -spiffeID "$1" | grep -q "Entry ID"; then
        echo "spire-setup: $1 is registered"
        return
    fi
    spire entry create -parentID "$NODE" -spiffeID "$1" -selector "docker:label:org.acme.workload:$2"
}

register spiffe://acme.internal/envoy envoy
register spiffe://acme.internal/agentauthz agentauthz
register spiffe://acme.internal/agent/helpdesk helpdesk-agent
register spiffe://acme.internal/agent/bi bi-agent
echo "spire-setup: done"
