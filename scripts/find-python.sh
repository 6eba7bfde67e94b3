#!/usr/bin/env bash
# Print the path of the newest Python 3 interpreter >= 3.<MIN> that can make a venv, or exit 1.
#   scripts/find-python.sh 12     # ansible-core 2.20 and later need Python >= 3.12
# Looks, in order, at $PYTHON_NEWEST (if set, only there), python3.14 / 3.13 / 3.12 on PATH,
# then the versions of pyenv (its root from `pyenv root`, $PYENV_ROOT or ~/.pyenv).
# Debian 12 ships 3.11 only: where none is found, say so on stderr so callers can skip.
set -euo pipefail
min=${1:?usage: find-python.sh MINOR}

usable() {  # a real interpreter (not a pyenv shim of an inactive version) >= 3.min, with venv + ensurepip
  "$1" -c "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, $min))" >/dev/null 2>&1
}

candidates=()
if [[ -n "${PYTHON_NEWEST:-}" ]]; then
  candidates+=("$PYTHON_NEWEST")
else
  for minor in 14 13 12; do
    ((minor >= min)) || continue
    command -v "python3.$minor" >/dev/null 2>&1 && candidates+=("$(command -v "python3.$minor")")
  done
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  if [[ -d "$root/versions" ]]; then
    while IFS= read -r dir; do
      candidates+=("$dir/bin/python3")
    done < <(find "$root/versions" -mindepth 1 -maxdepth 1 -name '3.*' | sort -rV)
  fi
fi

for python in "${candidates[@]}"; do
  if usable "$python"; then
    echo "$python"
    exit 0
  fi
done
echo "find-python: no Python >= 3.$min found (PYTHON_NEWEST, python3.1x on PATH, pyenv versions);" \
     "install one (e.g. \`pyenv install 3.13\`) or set PYTHON_NEWEST=/path/to/python3" >&2
exit 1
