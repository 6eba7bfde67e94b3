#!/usr/bin/env bash
# `make test-matrix`: the unit tests on each supported ansible-core, each in its own venv
# (.venv-core-<version>, made with the Python that release needs), then one full lab release
# (tests/integration/test_release.py -k full) on the newest.
#   scripts/test-matrix.sh 2.18 2.19 2.21
# ansible-core 2.18 and 2.19 run on Debian 12's Python 3.11 ($PYTHON, default python3); 2.20 and
# later need Python >= 3.12, found by scripts/find-python.sh. Where it is missing, those versions
# are skipped with a message saying so (MATRIX_STRICT=1 makes that an error instead).
# MATRIX_LAB=0 leaves out the lab release; MATRIX_LAB_NET / MATRIX_LAB_DIR say where its lab runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MATRIX_LAB=${MATRIX_LAB:-1}
MATRIX_LAB_NET=${MATRIX_LAB_NET:-12}
MATRIX_LAB_DIR=${MATRIX_LAB_DIR:-$PWD/.lab-matrix}
versions=("$@")
((${#versions[@]})) || { echo "usage: $0 VERSION..." >&2; exit 2; }

declare -A result
failed=0
newest_venv=""
newest=""

python_for() {  # the interpreter for ansible-core $1, or fail with the reason
  local minor=${1#2.}
  if ((minor >= 20)); then scripts/find-python.sh 12; else command -v "$PYTHON"; fi
}

venv_for() {  # make (or refresh) .venv-core-$1; print its path
  local version=$1 python=$2 venv=.venv-core-$1 next
  next="2.$(( ${version#2.} + 1 ))"
  local want
  want="ansible-core>=$version,<$next $(sha256sum tests/requirements-matrix.txt | cut -c1-16) $("$python" -V 2>&1)"
  if [[ ! -f $venv/.installed || "$(cat "$venv/.installed")" != "$want" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -r tests/requirements-matrix.txt "ansible-core>=$version,<$next" >&2
    echo "$want" > "$venv/.installed"
  fi
  echo "$venv"
}

for version in "${versions[@]}"; do
  echo "== ansible-core $version"
  if ! python=$(python_for "$version"); then
    if [[ ${MATRIX_STRICT:-0} = 1 ]]; then result[$version]="FAILED (no Python for it)"; failed=1
    else result[$version]="SKIPPED: needs Python >= 3.12, none found (see scripts/find-python.sh)"; fi
    echo "${result[$version]}"
    continue
  fi
  venv=$(venv_for "$version" "$python")
  "$venv/bin/python" -c 'import sys, ansible.release as r; print("ansible-core", r.__version__, "on Python", sys.version.split()[0])'
  start=$SECONDS
  if "$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider -n 2 --dist worksteal; then
    result[$version]="unit tests passed ($((SECONDS - start)) s, $("$venv/bin/python" -V))"
  else
    result[$version]="unit tests FAILED"; failed=1
  fi
  newest_venv=$venv; newest=$version
done

if [[ $MATRIX_LAB = 1 && -n $newest_venv ]]; then
  echo "== lab release on ansible-core $newest (LAB_NET $MATRIX_LAB_NET, $MATRIX_LAB_DIR)"
  start=$SECONDS
  lab() { LAB_DIR=$MATRIX_LAB_DIR LAB_NET=$MATRIX_LAB_NET "$newest_venv/bin/python" tests/lab/lab.py "$@"; }
  rc=0
  lab up || rc=$?
  if [[ $rc = 0 ]]; then
    LAB_DIR=$MATRIX_LAB_DIR "$newest_venv/bin/python" -m pytest -p no:cacheprovider -q \
      tests/integration/test_release.py -k full || rc=$?
  fi
  lab down || rc=$?
  if [[ $rc = 0 ]]; then result[lab]="full release passed on $newest ($((SECONDS - start)) s)"
  else result[lab]="full release FAILED on $newest"; failed=1; fi
fi

echo "== test-matrix summary"
for version in "${versions[@]}"; do echo "ansible-core $version: ${result[$version]}"; done
[[ -z ${result[lab]:-} ]] || echo "lab release: ${result[lab]}"
exit $failed
