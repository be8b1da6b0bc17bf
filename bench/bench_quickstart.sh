#!/usr/bin/env bash
# The README's quick start, timed on this machine: the set-up command in a fresh clone and a fresh
# virtual environment, the demo, the full test command and the fast subset. Prints a table with
# the machine named; the scratch clone and venv are removed at the end.
#   bash bench/bench_quickstart.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$root" "$work/clone"
# The shared data beside this checkout, as a clone in its usual place would find it.
if [ -z "${GWKCUDA_DATA:-}" ] && [ -d "$root/../shared/data" ]; then export GWKCUDA_DATA="$root/../shared/data"; fi
cd "$work/clone"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"

timed() {  # name, command...: appends "| name | seconds |" to the table
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$@" > "$work/out.txt" 2>&1 || { tail -n 20 "$work/out.txt"; echo "$name failed"; exit 1; }
  end=$(date +%s.%N)
  printf '| %s | %s |\n' "$name" "$(python3 -c "print(round($end - $start))")" >> "$work/rows.txt"
}

timed 'set-up: pip install torch==2.13.0 ... && pip install --no-build-isolation -e ".[test]"' \
  bash -c 'pip install -q torch==2.13.0 numpy pybind11 ninja "setuptools>=64" wheel && pip install -q --no-build-isolation -e ".[test]"'
timed 'gwkcuda --quiet demo' gwkcuda --quiet demo --out "$work/demo"
timed 'python -m pytest tests' python -m pytest tests -q -p no:cacheprovider
timed 'python -m pytest tests -m "not slow"' python -m pytest tests -q -m "not slow" -p no:cacheprovider
echo "Machine: $(python -c 'from gwkcuda.microbench import machine; print(machine())')"
echo
echo "| step | seconds |"
echo "|---|---:|"
cat "$work/rows.txt"
