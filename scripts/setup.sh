#!/usr/bin/env bash
# Create (or reuse, when up to date) the virtual environment .venv in the project root
# and install cseg-monai with its test dependencies.
#
# Usage: bash scripts/setup.sh [EXTRA ...]      e.g. bash scripts/setup.sh gui crf
# With CSEG_CRF_OPTIONAL=1 a failed pydensecrf2 build (extra "crf") is a warning, not an error
# (scripts/test.sh and scripts/demo.sh ask for it that way).
# Extra "gui" also installs Debian's chromium (/usr/bin/chromium, for the GUI's browser test)
# with apt-get when it is missing and this runs as root (or with password-less sudo); elsewhere
# it warns and that one test skips.
#
# torch is installed FIRST so that no dependency pulls a CUDA build: any torch >= 2.8
# already in the venv is kept, otherwise torch==2.13.0 (a local CPU wheel here) is installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
python="${PYTHON:-python3}"
extras="dev${*:+,$(IFS=,; echo "$*")}"
stamp_want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$extras"

if [[ ",$extras," == *",gui,"* ]] && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null && sudo -n true 2> /dev/null; then sudo="sudo -n"; fi
  if command -v apt-get > /dev/null && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
    echo "[setup] installing Debian's chromium (the GUI's browser test)"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y -qq chromium > /tmp/cseg-apt.log 2>&1; then
      $sudo apt-get update -qq >> /tmp/cseg-apt.log 2>&1 || true
      $sudo apt-get install -y -qq chromium >> /tmp/cseg-apt.log 2>&1 \
        || echo "[setup] WARNING: apt-get install chromium failed (see /tmp/cseg-apt.log); the browser test will skip" >&2
    fi
  else
    echo "[setup] WARNING: no /usr/bin/chromium and no root for apt-get: install Debian's chromium for the GUI's" \
         "browser test (it skips without it)" >&2
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  "$python" -m venv "$venv"
fi
if [ -f "$venv/.cseg-stamp" ] && [ "$(cat "$venv/.cseg-stamp")" = "$stamp_want" ]; then
  echo "[setup] $venv is up to date"
  exit 0
fi

pip_quiet() {  # pip, without the notices about local index folders that some machines configure
  "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip=(pip_quiet)
have_torch="$("$venv/bin/python" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); print(int(v >= (2, 8)))' 2>/dev/null || echo 0)"
if [ "$have_torch" != "1" ]; then
  echo "[setup] installing torch==${CSEG_TORCH_VERSION:-2.13.0} first (CPU wheel)"
  "${pip[@]}" install "torch==${CSEG_TORCH_VERSION:-2.13.0}"
fi
if [[ ",$extras," == *",crf,"* ]]; then
  # pydensecrf2 builds from source against Cython < 3 (Cython 3 breaks its .pyx files).
  "${pip[@]}" install "cython<3" setuptools wheel numpy
  if ! "${pip[@]}" install --no-build-isolation pydensecrf2; then
    if [ "${CSEG_CRF_OPTIONAL:-0}" != "1" ]; then
      echo "[setup] pydensecrf2 did not build (it needs a C++ compiler and Cython < 3)" >&2
      exit 1
    fi
    echo "[setup] WARNING: pydensecrf2 did not build (it needs a C++ compiler); the native CRF backend" \
         "works without it and the tests that compare with it will be skipped" >&2
    extras="$(echo ",$extras," | sed 's/,crf,/,/; s/^,//; s/,$//')"
  fi
fi
echo "[setup] installing cseg-monai[$extras] (editable)"
"${pip[@]}" install -e ".[$extras]"
echo "$stamp_want" > "$venv/.cseg-stamp"
echo "[setup] done: $venv"
