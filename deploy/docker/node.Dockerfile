# syntax=docker/dockerfile:1
# The GPU node image: the official vLLM OpenAI image plus Node.js and the node agent, which starts the
# instance managers and their `vllm serve` engines (`dynamollm actor node`).
# Build from the repository root:  docker build -f deploy/docker/node.Dockerfile -t dynamollm-node:0.1.0 .
# pinned to src/engine/vllm-version.ts VLLM_VERSION (test/unit/docker.test.ts): the release that knows the request
# parameters the gateway forwards and the flags the instance manager passes to `vllm serve`
ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.2

# ---- build: compile the TypeScript (npm run build: both tsconfigs, then scripts/build-native.mjs, which finds no C
# compiler here and leaves the gateway's native relay out: the node agent does not use it), keep the production
# dependencies only
FROM node:20.19-bookworm-slim AS build
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

# ---- Node.js runtime to add to the vLLM image (one binary; glibc-linked, as the vLLM image's Ubuntu)
FROM node:20.19-bookworm-slim AS node

# ---- run: vLLM + Node + the node agent
FROM ${VLLM_IMAGE}
COPY --from=node /usr/local/bin/node /usr/local/bin/node
ENV NODE_ENV=production HF_HOME=/models
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY profiles ./profiles
COPY nats.conf ./nats.conf
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app dynamollm && mkdir -p /models && chown 10001:10001 /models
# not root by default; locking GPU clocks through NVML needs root, so the node-agent DaemonSet runs this
# image as root (privileged) on GPU nodes, and only there (deploy/k8s/60-node-agent.yaml)
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["node", "/app/bin/dynamollm.js"]
CMD ["actor", "node", "--help"]
