# syntax=docker/dockerfile:1
# NODE_IMAGE: the official image by default; a stand-in built from npm's Node package where no registry is
# reachable (test/deploy). NPM_CONFIG_REGISTRY: a registry mirror for npm ci, when set; build arguments are
# recorded in the image's history, so a mirror's URL, never one carrying a credential.
ARG NODE_IMAGE=node:22-bookworm-slim

# Build stage: full dependencies, compile TypeScript.
FROM ${NODE_IMAGE} AS build
ARG NPM_CONFIG_REGISTRY
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
# The server only: the typed client (client/) is a package of its own, published apart.
RUN npx tsc -p tsconfig.build.json

# Runtime stage: production dependencies only, non-root, no build tools.
FROM ${NODE_IMAGE} AS runtime
ARG NPM_CONFIG_REGISTRY
# A capped old generation keeps RSS well under 200 MB at full load (README, Performance) at no measurable
# cost in throughput; the vault sheds load (503) at 90% of the heap limit rather than run out of memory.
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-old-space-size=160" \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY migrations ./migrations
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/phonevault.js"]
CMD ["serve"]
