# The Shoal image: one image for every role; the command names the role and its config,
# e.g. `origin --config /etc/shoal/origin-1.yaml` (see docker-compose.yml).

FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: `prepare` would build before the sources are copied. better-sqlite3's install
# (its prebuilt binary, or a node-gyp build with the toolchain this image has) runs explicitly.
RUN npm ci --no-audit --no-fund --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY domain domain
COPY projections projections
COPY kit kit
COPY adapters adapters
COPY p2p p2p
COPY services services
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# The console's web pages are served as they are (no build step): beside dist/, where the
# console looks for services/console/web.
COPY --from=build /app/services/console/web services/console/web
# Data directories (projection store, origin files) and the filesystem backend are volumes;
# created here so that new named volumes belong to the unprivileged user.
RUN mkdir -p /var/lib/shoal /var/lib/shoal-backend /etc/shoal \
  && chown node:node /var/lib/shoal /var/lib/shoal-backend
USER node
ENTRYPOINT ["node", "dist/services/cli/main.js"]
CMD ["--help"]
