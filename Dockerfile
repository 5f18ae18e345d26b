# syntax=docker/dockerfile:1
#
# Kurir image: one image for every role. The default command runs api + worker + scheduler in
# one process; docker-compose.yml overrides `command` to run each role (and the provider
# simulator) as its own container.

# ---- build: full dependency tree, compile TypeScript to dist/ ----------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Manifests first, so the dependency layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# policy/ may be absent from a checkout (git keeps no empty folders); the runtime stage copies it.
RUN npm run build && mkdir -p policy

# ---- runtime: production dependencies and compiled output only ---------------------------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Files stay owned by root and read-only to the app user: a compromised process cannot rewrite
# its own code.
COPY --from=build /app/dist ./dist
COPY --from=build /app/policy ./policy
USER node
EXPOSE 3000
# Slim images ship no curl or wget; node's built-in fetch does the probe. Roles without an HTTP
# listener (worker, scheduler) turn this off in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/main.js"]
