#!/bin/sh
# The container image's build-stage steps, run by the Dockerfile and by simulate.sh so
# that both build the same way. Runs in the build context's root (WORKDIR /src).
#   build.sh deps        install every dependency from the lockfile
#   build.sh app DEST    compile, then put the npm package's files (package.json "files")
#                        with production dependencies only into the fresh folder DEST
set -eu
case "${1:-}" in
  deps)
    npm ci --no-audit --no-fund
    ;;
  app)
    dest="${2:?usage: build.sh app DEST}"
    npm run build
    packdir="$(mktemp -d)"
    # The image ships exactly what the npm package ships: one list of runtime files.
    # --ignore-scripts: prepack would build a second time.
    npm pack --ignore-scripts --silent --pack-destination "$packdir" >/dev/null
    mkdir -p "$dest"
    tar -xzf "$packdir"/portcullis-*.tgz -C "$dest" --strip-components=1 --no-same-owner
    rm -rf "$packdir"
    # the lockfile pins the production dependency tree too (and stays, for SBOM scanners)
    cp package-lock.json "$dest/"
    (cd "$dest" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
    cp deploy/container/healthcheck.mjs "$dest/healthcheck.mjs"
    ;;
  *)
    echo "usage: build.sh deps | build.sh app DEST" >&2
    exit 2
    ;;
esac
