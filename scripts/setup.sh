#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian/Ubuntu machine: system packages
# (liblzma-dev to build the codec, xdelta3 as the interop oracle, zip and fastjar for archives), a venv in .venv, and the
# project in editable mode with its dev extras.  Idempotent: re-running skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v xdelta3 >/dev/null 2>&1 || need_apt+=(xdelta3)
# zip and fastjar make the archives the archive format's tests must round-trip byte-exact
command -v zip >/dev/null 2>&1 || need_apt+=(zip)
command -v fastjar >/dev/null 2>&1 || need_apt+=(fastjar)
[ -f /usr/include/lzma.h ] || need_apt+=(liblzma-dev)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)  # miniz's deflate is C++
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
quietly() {  # run a step, show its output only if it fails
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; echo "setup: failed: $*" >&2; exit 1; fi
}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  quietly .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.installed-$(cat pyproject.toml setup.py xdelta_ffi/_build.py xdelta_ffi/_glue.c xdelta_ffi/_zglue.c xdelta_ffi/_gzglue.c xdelta_ffi/_mzglue.cpp xdelta_ffi/_mzglue.h | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || ! .venv/bin/python -c 'import xdelta_ffi._xdelta3_cffi' >/dev/null 2>&1; then
  echo "setup: pip install -e '.[dev]'" >&2
  quietly .venv/bin/python -m pip install -q -e '.[dev]'
  .venv/bin/python -c 'import xdelta_ffi._xdelta3_cffi' # fail loudly if the build did not happen
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# Byte-compiled once here: with PYTHONDONTWRITEBYTECODE set (as in many CI images) every CLI run
# would otherwise compile the project's modules again (a third of its start-up time).
quietly .venv/bin/python -m compileall -q -j 0 deltaglider_async cli xdelta_ffi
