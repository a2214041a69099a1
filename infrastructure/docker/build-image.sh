#!/usr/bin/env bash
# `make image`: build infrastructure/docker/Containerfile with the first usable engine among
# docker, podman and buildah. A CLI whose engine does not answer (a docker client without a
# daemon, say) is skipped with a note; if none is usable the script says why and fails.
#
#   infrastructure/docker/build-image.sh [TAG]       # default tag: mysoulmate:<git describe>
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-mysoulmate:$(git -C "$root" describe --always --dirty 2>/dev/null || echo dev)}"
containerfile="$root/infrastructure/docker/Containerfile"
notes=()

usable() {
  case "$1" in
    docker) docker info >/dev/null 2>&1 ;;      # needs a reachable daemon
    podman) podman info >/dev/null 2>&1 ;;      # daemonless, but its storage must work
    buildah) buildah info >/dev/null 2>&1 ;;
  esac
}

for engine in docker podman buildah; do
  if ! command -v "$engine" >/dev/null 2>&1; then
    continue
  fi
  if ! usable "$engine"; then
    notes+=("$engine is installed but its engine is not reachable ('$engine info' failed)")
    continue
  fi
  echo "building $tag with $engine" >&2
  case "$engine" in
    buildah) exec buildah build --file "$containerfile" --tag "$tag" "$root" ;;
    *) exec "$engine" build --file "$containerfile" --tag "$tag" "$root" ;;
  esac
done

{
  echo "make image: no usable container engine, nothing built."
  for note in "${notes[@]}"; do echo "  - $note"; done
  echo "  Install and start one of docker, podman or buildah, or build the same file elsewhere:"
  echo "  docker build -f infrastructure/docker/Containerfile -t $tag ."
} >&2
exit 1
