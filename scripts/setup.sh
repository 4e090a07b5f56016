#!/usr/bin/env bash
# Set up the course in ./.venv (idempotent; a second run takes seconds).
#   bash scripts/setup.sh          runtime: torch, fastai, nbgrader, JupyterLab, MkDocs Material
#   bash scripts/setup.sh --dev    + test, lint and browser-test tools, and the system packages the tests use
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (use --dev or nothing)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup.sh: Python >= 3.11 is needed; set PYTHON=/path/to/python3.11" >&2; exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip compiles every installed module on one core; compileall below does it on all of them (~35 s less on two)
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-compile)

if [ "$dev" = 1 ]; then
  "${pip[@]}" -e ".[dev,docs]"
  # System packages for the browser tests (Chromium) and the grading sandbox (bubblewrap).
  need=()
  command -v chromium >/dev/null || need+=(chromium chromium-driver)
  command -v bwrap >/dev/null || need+=(bubblewrap)
  if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "setup.sh: please install ${need[*]} (e.g. sudo apt-get install ${need[*]}); tests that need them fail without" >&2
    fi
  fi
else
  "${pip[@]}" -e .
fi
# The site vendors MathJax and iframe-worker from npm (pinned in package-lock.json); nothing loads from a CDN.
if [ -f package.json ]; then
  if command -v npm >/dev/null; then npm ci --silent --no-audit --no-fund
  else echo "setup.sh: npm not found; install Node.js to build the course site" >&2; fi
fi
# Bytecode for the installed libraries: sandboxed workers import them from a read-only mount and cannot write it.
.venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
# One kernel for executing notebooks, named as the notebooks expect.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
echo "setup.sh: ready ($(.venv/bin/course --version))"
