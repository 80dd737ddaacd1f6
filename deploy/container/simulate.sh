#!/usr/bin/env bash
# Runs the container image's build and run steps on a machine without a container engine
# (this repository's CI cannot pull base images), reading them from the Dockerfile:
#
#   simulate.sh build STATE            build stage: the Dockerfile's build-context COPYs
#                                      into STATE/src, then its RUN lines there (npm ci,
#                                      npm run build, npm pack, npm ci --omit=dev into a
#                                      fresh STATE/stage/opt/portcullis)
#   simulate.sh run STATE CONFIG_DIR [ARGS...]
#                                      final stage: a root filesystem with only what the
#                                      image has (/usr from the host in place of the base
#                                      image, node, /opt/portcullis, CONFIG_DIR mounted
#                                      read-only at /etc/portcullis), mounted read-only as
#                                      a whole; ENTRYPOINT + CMD (or ARGS) as PID 1 of a
#                                      new PID namespace, as USER with no capabilities.
#                                      SIGTERM/SIGINT/SIGHUP are passed to it (docker stop,
#                                      docker kill -s HUP); exits with its exit code.
#   simulate.sh exec STATE CMD...      a command inside the running one (docker exec)
#   simulate.sh healthcheck STATE      the Dockerfile's HEALTHCHECK command, inside it
#
# Needs root (mount and PID namespaces, chroot), util-linux (unshare, nsenter, setpriv)
# and node. What differs from a real image: the base image's /usr is the host's, the
# network is the host's (like --network host), and node is the one running this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dockerfile="$repo/Dockerfile"
df() { node "$here/read-dockerfile.mjs" "$dockerfile" "$@"; }
die() { echo "simulate.sh: $*" >&2; exit 1; }

cmd="${1:-}"
state="${2:-}"
[ -n "$cmd" ] && [ -n "$state" ] || die "usage: simulate.sh build|run|exec|healthcheck STATE [...]"
shift 2

# The image's own paths that the build stage produces and the final stage copies
# (COPY --from=build SRC DEST): the simulation keeps them under STATE/stage.
stage_copies() { node -e '
  const f = JSON.parse(process.argv[1]);
  for (const c of f.copies) if (c.from) for (const s of c.sources) console.log(`${s}\t${c.dest}`);
' "$(df final)"; }

case "$cmd" in
build)
  command -v npm >/dev/null || die "npm is needed for the build stage"
  rm -rf "$state" && mkdir -p "$state/src" "$state/stage"
  state="$(cd "$state" && pwd)"
  # The build context, as `COPY SRC DEST` in the build stage sends it (after .dockerignore).
  while IFS=$'\t' read -r src dest; do
    [ -e "$repo/$src" ] || die "Dockerfile copies $src, which does not exist"
    case "$dest" in */) mkdir -p "$state/src/$dest" ;; *) mkdir -p "$(dirname "$state/src/$dest")" ;; esac
    cp -a "$repo/$src" "$state/src/$dest"
  done < <(df copies)
  # The build stage's RUN lines, in its WORKDIR, with the paths the final stage copies
  # from mapped into STATE/stage.
  mapfile -t runs < <(node -e 'for (const r of JSON.parse(process.argv[1]).runs) console.log(r)' "$(df build)")
  for run in "${runs[@]}"; do
    while IFS=$'\t' read -r from _to; do run="${run//$from/$state/stage$from}"; done < <(stage_copies)
    echo "simulate.sh: RUN $run" >&2
    (cd "$state/src" && sh -c "$run")
  done
  echo "simulate.sh: image files in $state/stage" >&2
  ;;

run)
  [ "$(id -u)" -eq 0 ] || die "run needs root (mount and PID namespaces, chroot)"
  config="${1:?usage: simulate.sh run STATE CONFIG_DIR [ARGS...]}"
  shift
  state="$(cd "$state" && pwd)"
  config="$(cd "$config" && pwd)"
  [ -d "$state/stage" ] || die "run 'simulate.sh build $state' first"
  final="$(df final)"
  user="$(node -e 'console.log(JSON.parse(process.argv[1]).user)' "$final")"
  mapfile -t argv < <(node -e '
    const f = JSON.parse(process.argv[1]); const extra = process.argv.slice(2);
    for (const a of [...f.entrypoint, ...(extra.length ? extra : f.cmd)]) console.log(a);
  ' "$final" "$@")
  mapfile -t envs < <(node -e 'for (const [k, v] of Object.entries(JSON.parse(process.argv[1]).env)) console.log(`${k}=${v}`)' "$final")
  uid="${user%%:*}"
  gid="${user#*:}"
  nodebin="$(readlink -f "$(command -v node)")"
  root="$state/rootfs"
  mkdir -p "$root"
  rm -f "$state/pid"
  # The setup runs inside the new namespaces; nothing it mounts is visible outside.
  setup='
    set -eu
    R="$1"; STAGE="$2"; CONFIG="$3"; NODEBIN="$4"; UID_="$5"; GID_="$6"; shift 6
    mount -t tmpfs -o mode=0755 tmpfs "$R"
    ro_bind() { mkdir -p "$2"; mount --rbind "$1" "$2"; mount -o remount,bind,ro "$2"; }
    # the base image: the host'"'"'s /usr stands in for node:*-bookworm-slim'"'"'s
    ro_bind /usr "$R/usr"
    for l in bin sbin lib lib32 lib64 libx32; do
      if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; elif [ -d "/$l" ]; then ro_bind "/$l" "$R/$l"; fi
    done
    # node only: no npm, npx, corepack or yarn (the final stage removes them)
    mkdir -p "$R/opt/nodejs/bin" && touch "$R/opt/nodejs/bin/node" && mount --bind "$NODEBIN" "$R/opt/nodejs/bin/node" && mount -o remount,bind,ro "$R/opt/nodejs/bin/node"
    mkdir -p "$R/etc"
    for f in hosts nsswitch.conf resolv.conf ld.so.cache localtime; do [ -e "/etc/$f" ] && cp -L "/etc/$f" "$R/etc/$f"; done
    # the final stage'"'"'s groupadd/useradd
    printf "root:x:0:0:root:/root:/bin/sh\nportcullis:x:%s:%s::/nonexistent:/usr/sbin/nologin\n" "$UID_" "$GID_" > "$R/etc/passwd"
    printf "root:x:0:\nportcullis:x:%s:\n" "$GID_" > "$R/etc/group"
    ro_bind "$CONFIG" "$R/etc/portcullis"
    ro_bind "$STAGE/opt/portcullis" "$R/opt/portcullis"
    mkdir -p "$R/dev" "$R/proc" "$R/sys" "$R/tmp"
    chmod 1777 "$R/tmp"
    mount --rbind /dev "$R/dev"
    mount -t proc proc "$R/proc"
    ro_bind /sys "$R/sys"
    # docker run --read-only: the whole root file system, /tmp included
    mount -o remount,ro "$R"
    exec chroot "$R" /usr/bin/setpriv --reuid="$UID_" --regid="$GID_" --clear-groups \
      --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
  '
  unshare --mount --pid --fork --propagation private \
    bash -c "$setup" simulate "$root" "$state/stage" "$config" "$nodebin" "$uid" "$gid" \
    /usr/bin/env -i PATH=/opt/nodejs/bin:/usr/local/bin:/usr/bin:/bin HOME=/nonexistent "${envs[@]}" "${argv[@]}" &
  ns=$!
  # PID 1 of the new namespace is unshare's child; signals go to it, as docker stop does.
  pid=""
  for _ in $(seq 1 100); do
    pid="$(cat "/proc/$ns/task/$ns/children" 2>/dev/null | awk '{print $1}')"
    [ -n "$pid" ] && break
    sleep 0.05
  done
  [ -n "$pid" ] || { wait "$ns"; exit $?; }
  echo "$pid" > "$state/pid"
  for sig in TERM INT HUP; do trap "kill -$sig $pid 2>/dev/null || true" "$sig"; done
  rc=0
  while :; do
    wait "$ns" && rc=0 || rc=$?
    # wait returns >128 when a trapped signal interrupted it; the child is still running
    kill -0 "$ns" 2>/dev/null || break
  done
  rm -f "$state/pid"
  exit "$rc"
  ;;

exec | healthcheck)
  [ -s "$state/pid" ] || die "nothing runs in $state (start it with 'simulate.sh run')"
  pid="$(cat "$state/pid")"
  final="$(df final)"
  user="$(node -e 'console.log(JSON.parse(process.argv[1]).user)' "$final")"
  if [ "$cmd" = healthcheck ]; then
    mapfile -t argv < <(node -e 'for (const a of JSON.parse(process.argv[1]).healthcheck.cmd) console.log(a)' "$final")
  else
    argv=("$@")
  fi
  mapfile -t envs < <(node -e 'for (const [k, v] of Object.entries(JSON.parse(process.argv[1]).env)) console.log(`${k}=${v}`)' "$final")
  exec nsenter --target "$pid" --mount --pid --root --wd \
    /usr/bin/setpriv --reuid="${user%%:*}" --regid="${user#*:}" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    /usr/bin/env -i PATH=/opt/nodejs/bin:/usr/local/bin:/usr/bin:/bin HOME=/nonexistent "${envs[@]}" "${argv[@]}"
  ;;

*)
  die "unknown command $cmd; use build, run, exec or healthcheck"
  ;;
esac
