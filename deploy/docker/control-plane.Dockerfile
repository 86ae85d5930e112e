# syntax=docker/dockerfile:1
# The control-plane image: gateway, cluster and pool managers (`dynamollm actor <kind>`), and the CLI.
# Build from the repository root:  docker build -f deploy/docker/control-plane.Dockerfile -t dynamollm-control-plane:0.1.0 .

# ---- build: compile the TypeScript and the gateway's native data plane (npm run build -> dist/, dist/native/relay.so
# with the C compiler installed here; docs/DATAPATH.md "Native data plane"), then keep the production dependencies only
FROM node:20.19-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.types.json ./
COPY src ./src
COPY actors ./actors
COPY protocols ./protocols
COPY native ./native
COPY scripts/build-native.mjs ./scripts/build-native.mjs
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# ---- run: compiled JS and production node_modules (no compiler, no TypeScript loader), not root
FROM node:20.19-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY profiles ./profiles
COPY data ./data
COPY nats.conf ./nats.conf
COPY src/telemetry/dashboard ./src/telemetry/dashboard
USER 10001:10001
EXPOSE 8000 8081
ENTRYPOINT ["node", "/app/bin/dynamollm.js"]
CMD ["--help"]
