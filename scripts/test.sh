#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the whole test suite. Extra arguments go to pytest.
# Real data is read from ../shared/data (or $CSEG_DATA_DIR); tests that need it skip with
# a clear reason where it is absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CSEG_CRF_OPTIONAL=1 bash scripts/setup.sh crf gui  # pydensecrf2 (CRF tests), gradio + chromium (GUI tests)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q --durations=15 "$@"
