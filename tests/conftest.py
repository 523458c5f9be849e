"""Shared fixtures: where the real data lives, phantom data sets, the bundle paths."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cseg_monai.common import data_root
from cseg_monai.common.errors import exception_chain
from cseg_monai.data.phantom import write_phantom_dataset
from cseg_monai.workflows import bundle_workflow as _bundle_workflow

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"


def require_data(*parts: str) -> Path:
    """The path of a real data set, or skip the test with a clear reason."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set CSEG_DATA_DIR or put the shared data in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def phantom_isbi(tmp_path_factory) -> Path:
    """A tiny ISBI-style phantom data set: 6 labelled 128x128 slices and 2 test slices."""
    out = tmp_path_factory.mktemp("phantom") / "isbi"
    write_phantom_dataset(out, n_train=6, n_test=2, size=128, seed=3)
    return out


def error_chain(excinfo) -> str:
    """Every message of an exception's cause chain, one per line (MONAI wraps config and
    transform errors in ``RuntimeError``; the message naming the file is further down)."""
    return "\n".join(str(e) for e in exception_chain(excinfo.value))


def bundle_workflow(configs_dir: Path, configs: list[str], workflow_type: str, **override):
    """A MONAI ``ConfigWorkflow`` over ``configs`` (file names in ``configs_dir``, merged in order),
    built as the CLI and the GUI build theirs (:func:`cseg_monai.workflows.bundle_workflow`)."""
    return _bundle_workflow(Path(configs_dir).parent, configs, workflow_type, **override)


def run_workflow(wf):
    """Initialise ``wf``, check that it has MONAI's required properties, run it; return it."""
    wf.initialize()
    assert wf.check_properties() in (None, [])
    wf.run()
    return wf


def torchrun_training(configs_dir: Path, config_files: list[str], output_dir: Path, cwd: Path, **overrides) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m monai.bundle run training`` on CPU (one OpenMP thread each), as a
    bundle's docs give it, with ``--key value`` overrides (strings as they are, others as ``repr``); it must exit 0."""
    files = ",".join(f"'{Path(configs_dir) / name}'" for name in config_files)
    cmd = [
        str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", "--master_port", str(free_port()), "-m", "monai.bundle", "run",
        "training", "--config_file", f"[{files}]", "--output_dir", str(output_dir),
    ]  # fmt: skip
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for torchrun, MLflow, the GUI server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
