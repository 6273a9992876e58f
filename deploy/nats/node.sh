#!/bin/sh
# Entrypoint of the nats image (deploy/Dockerfile, stage `nats`): one node of the compose
# deployment's NATS cluster. nats-server runs as this container's main process (its pid,
# 1, goes to /etc/nats/auth/nats.pid), and beside it the access service, which renders the
# fleet's authorization (one NATS user per admitted agent key) from the event log into
# /etc/nats/auth/auth.conf whenever it changes and tells this node to reload (SIGHUP by
# the pid file). The access service is restarted if it stops (the log may not be
# reachable yet while the cluster forms); nats-server is never restarted for it.
set -eu
(
  until [ -s /etc/nats/auth/nats.pid ]; do sleep 1; done
  while :; do
    fleet serve access \
      --nats-auth-file /etc/nats/auth/auth.conf \
      --nats-pid-file /etc/nats/auth/nats.pid || true
    sleep 5
  done
) &
exec nats-server --config /etc/nats/nats.conf
