#!/bin/sh
# Creates ./secrets/ for docker compose: random Postgres password, the matching DATABASE_URL, a master key and
# an HS256 JWT secret. Existing files are kept: replacing the master key would make stored numbers unreadable.
set -eu
cd "$(dirname "$0")/.."
# The folder is private to you; the files inside are world-readable so that the container's non-root user can
# read them where compose mounts them (/run/secrets/…), which the folder's own mode does not reach.
mkdir -p secrets
chmod 700 secrets
[ -s secrets/postgres_password ] || head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > secrets/postgres_password
[ -s secrets/database_url ] || printf 'postgres://phonevault:%s@postgres:5432/phonevault' "$(cat secrets/postgres_password)" > secrets/database_url
[ -s secrets/vault_master_key ] || head -c 32 /dev/urandom | base64 | tr -d '\n' > secrets/vault_master_key
[ -s secrets/jwt_secret ] || head -c 48 /dev/urandom | base64 | tr -d '\n' > secrets/jwt_secret
chmod 644 secrets/*
echo "secrets ready in ./secrets (keep vault_master_key safe: losing it loses the data)"
