#!/usr/bin/env bash
# Build the kflow image, with no Docker daemon needed (buildah), from a wheelhouse built here.
#
#   deploy/docker/build.sh [TAG]            TAG defaults to kflow:local
#   deploy/docker/build.sh --wheelhouse     only step 1 (tests/deploy installs from it)
#
# 1. wheelhouse: the kflow wheel from this checkout plus every dependency as a binary wheel
#    for the image's Python and platform (pip download --platform), in deploy/docker/wheelhouse/
#    (ADR 0070: the build itself never reaches a package index).
# 2. image: buildah (installed from apt when missing and we are root), or docker when a daemon
#    answers and buildah is absent.
#
# Environment: KFLOW_WHEELHOUSE (deploy/docker/wheelhouse; the Dockerfile copies only that one),
# KFLOW_IMAGE_PYTHON (python:3.11-slim-bookworm, the base image; its Python must be
# KFLOW_IMAGE_PY_VERSION, default 3.11), KFLOW_IMAGE_ARCH (x86_64 or aarch64; default: this
# machine's), KFLOW_IMAGE_BUILDER (buildah or docker; default: as above), BUILDAH_OPTS (global
# buildah options, e.g. "--storage-driver vfs --root DIR --runroot DIR"), KFLOW_IMAGE_PULL
# (buildah --pull value: missing (default), never, always), PYTHON (python3; runs pip: pip
# evaluates dependency markers such as python_full_version < "3.11.3" with this interpreter, so
# use one whose version matches the image's Python).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WHEELHOUSE_ONLY=0
if [[ "${1:-}" == --wheelhouse ]]; then
  WHEELHOUSE_ONLY=1
  shift
fi
TAG="${1:-kflow:local}"
BASE="${KFLOW_IMAGE_PYTHON:-python:3.11-slim-bookworm}"
PY_VERSION="${KFLOW_IMAGE_PY_VERSION:-3.11}"
ARCH="${KFLOW_IMAGE_ARCH:-$(uname -m)}"
PYTHON="${PYTHON:-python3}"
WHEELHOUSE="${KFLOW_WHEELHOUSE:-$HERE/wheelhouse}"

say() { echo "build.sh: $*" >&2; }
fail() { say "$*"; exit 1; }

case "$ARCH" in
  x86_64 | aarch64) ;;
  *) fail "KFLOW_IMAGE_ARCH must be x86_64 or aarch64, got '$ARCH'" ;;
esac

wheelhouse() {
  local have
  have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ "$have" == "$PY_VERSION" ]] \
    || fail "PYTHON=$PYTHON is Python $have but the image's is $PY_VERSION: use a matching PYTHON"
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then  # e.g. Debian's python3 without python3-pip
    local tools
    tools="$(mktemp -d)"
    trap "rm -rf '$tools'" EXIT
    "$PYTHON" -m venv "$tools/venv"
    PYTHON="$tools/venv/bin/python"
  fi
  mkdir -p "$WHEELHOUSE"
  rm -f "$WHEELHOUSE"/*.whl
  say "building the kflow wheel"
  "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELHOUSE" "$REPO"
  local wheel
  wheel="$(ls "$WHEELHOUSE"/kflow-*.whl)"
  say "downloading dependency wheels for CPython $PY_VERSION on manylinux $ARCH"
  "$PYTHON" -m pip download --quiet --dest "$WHEELHOUSE" --only-binary=:all: \
    --implementation cp --python-version "$PY_VERSION" \
    --platform "manylinux_2_28_$ARCH" --platform "manylinux_2_17_$ARCH" \
    --platform "manylinux2014_$ARCH" "$wheel"
  say "wheelhouse: $(ls "$WHEELHOUSE" | wc -l) wheels in $WHEELHOUSE"
}

builder() {
  if [[ -n "${KFLOW_IMAGE_BUILDER:-}" ]]; then
    echo "$KFLOW_IMAGE_BUILDER"
  elif command -v buildah >/dev/null; then
    echo buildah
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  elif [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing buildah (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah \
      </dev/null >&2 || { apt-get update -qq && apt-get install -y -qq buildah </dev/null >&2; }
    echo buildah
  else
    fail "no image builder: install buildah (apt-get install buildah) or start a Docker daemon"
  fi
}

wheelhouse
((WHEELHOUSE_ONLY)) && exit 0
started=$SECONDS
case "$(builder)" in
  buildah)
    # chroot isolation: RUN steps work without an OCI runtime or cgroup setup (CI machines)
    # shellcheck disable=SC2086
    buildah ${BUILDAH_OPTS:-} build --isolation chroot --layers \
      --pull="${KFLOW_IMAGE_PULL:-missing}" --build-arg "PYTHON_IMAGE=$BASE" \
      -f "$HERE/Dockerfile" -t "$TAG" "$REPO"
    ;;
  docker)
    docker build --build-arg "PYTHON_IMAGE=$BASE" -f "$HERE/Dockerfile" -t "$TAG" "$REPO"
    ;;
  *) fail "KFLOW_IMAGE_BUILDER must be buildah or docker" ;;
esac
say "built $TAG in $((SECONDS - started)) s"
