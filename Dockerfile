# portcullis container image. Build from the repository root:
#   docker build -t portcullis:0.1.0 .
# Run (config and certificates in ./etc, mounted read-only; nothing else is writable):
#   docker run --read-only -v "$PWD/etc:/etc/portcullis:ro" -p 8443:8443 portcullis:0.1.0
# The same build and run steps run without a container engine in
# deploy/container/simulate.sh, which the test suite uses; docs/deploy.md#container.

# The runtime we recommend: the current Node.js LTS on Debian bookworm, slim variant.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: install every dependency, compile, then install the runtime files alone ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY deploy/container/build.sh deploy/container/healthcheck.mjs ./deploy/container/
COPY package.json package-lock.json ./
# its own layer, so a source change does not reinstall the dependencies
RUN sh deploy/container/build.sh deps
COPY tsconfig.json README.md LICENSE CHANGELOG.md ./
COPY bin ./bin
COPY assets ./assets
COPY src ./src
COPY test ./test
# `npm run build`, then the files the npm package ships, with production dependencies
# only (npm ci --omit=dev from the lockfile), into a fresh /opt/portcullis
RUN sh deploy/container/build.sh app /opt/portcullis

# ---- runtime: node and the installed package, nothing to build or install with ----
FROM ${NODE_IMAGE}
# Package managers are not needed to run a built app; removing them leaves less to exploit.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid portcullis --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin portcullis \
 && install -d -m 0755 /etc/portcullis
# root owns the code: the proxy cannot modify itself
COPY --from=build /opt/portcullis /opt/portcullis
ENV NODE_ENV=production
# numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
EXPOSE 8443 9901
# The primary drains in-flight requests on SIGTERM, then exits 0. Give `docker stop` a
# --time (or Kubernetes terminationGracePeriodSeconds) above --drain-timeout (30 s).
STOPSIGNAL SIGTERM
# GET /healthz on admin.probe_address, else the admin listener (read from the running config); slim images
# have no curl, so node itself asks.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["node", "/opt/portcullis/healthcheck.mjs"]
ENTRYPOINT ["node", "/opt/portcullis/bin/portcullis.js"]
CMD ["run", "-c", "/etc/portcullis/portcullis.yaml"]
