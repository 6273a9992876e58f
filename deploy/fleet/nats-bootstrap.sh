#!/bin/sh
# One-shot service `nats-bootstrap` of docker-compose.yml, before any NATS node starts:
#   - a private CA and a certificate it signed for the three nodes (volume nats-tls, read
#     by the nodes only), and the CA alone (volume fleet-ca, read by every client);
#   - the control plane's NATS key (volume control, read by the control plane only);
#   - each node's first authorization config (volumes nats-N-auth): the control plane and
#     anonymous registration, no agents yet; the access service beside each node keeps it
#     current from then on.
# Runs again harmlessly: what exists is kept (the certificate is made again, with a new
# CA, only when the names change or 30 days are left).
set -eu
fleet tls-cert --dir /etc/nats/tls \
  --name nats-1 --name nats-2 --name nats-3 --name localhost --name 127.0.0.1
cp /etc/nats/tls/ca.pem /etc/fleet/ca/ca.pem.new
mv /etc/fleet/ca/ca.pem.new /etc/fleet/ca/ca.pem
for node in 1 2 3; do
  fleet nats-config --bootstrap --create-key \
    --nats-key-file /var/lib/fleet/control/control.nk \
    --out "/etc/nats/auth-$node/auth.conf"
done
