#!/bin/sh
# One-shot service `tenant` of docker-compose.yml: creates the tenant "$TENANT" and keeps
# its admin and enrollment tokens in the bootstrap volume (0600, owned by uid 10001), for
# the agent and the policy service. Tokens are written to files, never to the log.
# Runs again harmlessly: an existing token file is kept.
set -eu
dir=/var/lib/fleet/bootstrap
umask 077
if [ -s "$dir/enrollment.token" ] && [ -s "$dir/admin.token" ]; then
    echo "tenant $TENANT: tokens already in $dir"
    exit 0
fi
out="$dir/tenant-create.out"
if ! fleet tenant create "$TENANT" >"$out"; then
    # The tenant exists (a fresh bootstrap volume on an old log): issue new tokens.
    fleet tenant token "$TENANT" --role admin --label compose >"$out"
    fleet tenant token "$TENANT" --role enroll --label compose >>"$out"
fi
# `fleet tenant` prints each token indented by two spaces after the line naming it.
token_after() {
    sed -n "/$1/{n;s/^ *//;p;q}" "$out"
}
token_after '^admin token' >"$dir/admin.token.new"
token_after '^enroll' >"$dir/enrollment.token.new"
rm -f "$out"
[ -s "$dir/admin.token.new" ] && [ -s "$dir/enrollment.token.new" ] || {
    echo "tenant $TENANT: could not read the tokens fleet printed" >&2
    exit 1
}
mv "$dir/admin.token.new" "$dir/admin.token"
mv "$dir/enrollment.token.new" "$dir/enrollment.token"
echo "tenant $TENANT: admin and enrollment tokens written to $dir"
