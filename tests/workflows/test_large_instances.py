"""Out-of-core instances: a killed run resumes in the pass where it stopped and gives the same ids;
settings are checked before anything is written; a 2-worker cluster gives the same result."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import zarr

from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
from cseg_monai.postprocessing import InstanceParams
from cseg_monai.transforms import RescaleToSpacingd
from cseg_monai.workflows.large_instances import LargeInstanceInference

PARAMS = dict(method="multicut", sigma_seeds=2.0, min_supervoxel_size=5, mask_watershed=True, min_size=20)
SETTINGS = dict(roi_size=(8, 32, 32), predict_block_shape=(8, 32, 32), block_shape=(8, 32, 32), chunks=(8, 32, 32), stitch_halo=(4, 12, 12),
                prob_dtype="float32", scheduler="synchronous", progress=False)  # fmt: skip


class PhantomNet(torch.nn.Module):
    """A stand-in for the UNet3D with nucleus-like outputs: boundary from the local gradient, foreground from the intensity."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.scale = torch.nn.Parameter(torch.tensor([8.0, 10.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        grad = sum(torch.abs(torch.diff(x, dim=d, append=x.narrow(d, x.shape[d] - 1, 1))) for d in (2, 3, 4))
        return torch.cat([self.scale[0] * (grad - 0.15), self.scale[1] * (x - 0.3)], dim=1)


def _volume(path):
    image = make_nuclei_phantom((16, 80, 72), n_nuclei=14, radius_range=(4.0, 7.0), seed=9)[0]
    z = zarr.open_array(path, mode="w", shape=image.shape, chunks=(8, 40, 36), dtype=image.dtype)
    z[:] = image
    return str(path)


def _runner(**kw):
    options = {**SETTINGS, **kw}
    return LargeInstanceInference(PhantomNet(), rescale=RescaleToSpacingd("image", model_spacing=None), instance_params=InstanceParams(**PARAMS), **options)


def test_ids_are_unique_per_object_and_settings_are_checked(tmp_path):
    src = _volume(tmp_path / "in.zarr")
    out = _runner().run_one(src, tmp_path / "a.ome.zarr")
    labels = zarr.open_group(out["output"])["labels/segmentation/0"][:]
    assert out["instances"] == labels.max() >= 5 and set(np.unique(labels)) == set(range(labels.max() + 1))
    assert out["model_shape"] == [16, 80, 72] and out["zoom"] == [1.0, 1.0, 1.0]
    assert not (tmp_path / "a.ome.zarr" / ".cseg_work").exists()  # intermediates go with completion
    again = _runner().run_one(src, tmp_path / "a.ome.zarr")
    assert again["skipped"] == again["blocks"] and again["instances"] == out["instances"]
    LargeInstanceInference(PhantomNet(), instance_params=InstanceParams(**{**PARAMS, "min_major_axis": 2.0}), **SETTINGS)  # whole-object filters run
    with pytest.raises(ValueError, match="stitch_halo"):
        _runner(stitch_halo=(4, 12))
    with pytest.raises(ValueError, match="intensity_percentiles"):
        _runner(intensity_percentiles=(99.0, 1.0))
    flat = tmp_path / "flat.zarr"
    zarr.open_array(flat, mode="w", shape=(8, 32, 32), dtype="u1")[:] = 7
    with pytest.raises(ValueError, match="flat.zarr: the volume is constant"):
        _runner().run_one(str(flat), tmp_path / "flat.ome.zarr")


def test_a_killed_run_resumes_in_its_pass_and_gives_the_same_ids(tmp_path):
    src = _volume(tmp_path / "in.zarr")
    reference = zarr.open_group(_runner().run_one(src, tmp_path / "ref.ome.zarr")["output"])["labels/segmentation/0"][:]
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_large_instances import PhantomNet, _runner
        run = _runner()
        run.network = PhantomNet(float(sys.argv[1]))
        print(run.run_one({src!r}, {str(tmp_path / 'out.ome.zarr')!r})["instances"])
    """))
    proc = subprocess.Popen([sys.executable, str(script), "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = tmp_path / "out.ome.zarr.partial" / ".cseg_blocks_done" / "prob"
    deadline = time.time() + 120
    while time.time() < deadline and (not done.is_dir() or len(list(done.iterdir())) < 3):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = len(list(done.iterdir()))
    assert 3 <= finished < 12, "the run must be killed in the network pass"
    rerun = subprocess.run([sys.executable, str(script), "0"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert np.array_equal(zarr.open_group(tmp_path / "out.ome.zarr")["labels/segmentation/0"][:], reference)


@pytest.mark.slow
def test_a_local_cluster_of_two_workers_gives_the_same_ids(tmp_path):
    src = _volume(tmp_path / "in.zarr")
    reference = zarr.open_group(_runner().run_one(src, tmp_path / "ref.ome.zarr")["output"])["labels/segmentation/0"][:]
    summary = _runner(scheduler=None, n_workers=2, threads_per_worker=1).run(src, tmp_path / "out")
    assert summary["n_failed"] == 0
    assert np.array_equal(zarr.open_group(tmp_path / "out" / "in.ome.zarr")["labels/segmentation/0"][:], reference)


def test_a_run_stopped_in_the_output_pass_resumes_there(tmp_path, monkeypatch):
    """A failure after some output blocks were written: the rerun writes only the others, same ids."""
    from cseg_monai.workflows import large_instances

    src = _volume(tmp_path / "in.zarr")
    reference = zarr.open_group(_runner().run_one(src, tmp_path / "ref.ome.zarr")["output"])["labels/segmentation/0"][:]
    write, calls = large_instances._write_output, []

    def failing(job, block_id, core):
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        calls.append(block_id)
        return write(job, block_id, core)

    monkeypatch.setattr(large_instances, "_write_output", failing)
    with pytest.raises(OSError, match="injected"):
        _runner().run_one(src, tmp_path / "out.ome.zarr")
    monkeypatch.setattr(large_instances, "_write_output", write)
    again = _runner().run_one(src, tmp_path / "out.ome.zarr")
    assert again["skipped"] == 3 and again["pass_seconds"]["prob"] < 1.0  # the network pass was not run again
    assert np.array_equal(zarr.open_group(again["output"])["labels/segmentation/0"][:], reference)


def test_halo_and_channels_are_checked(tmp_path):
    with pytest.raises(ValueError, match="must not exceed block_shape"):
        _runner(stitch_halo=(4, 40, 12))
    with pytest.raises(ValueError, match=r"stitch_halo .* >= 1"):
        _runner(stitch_halo=(0, 12, 12))
    one = LargeInstanceInference(torch.nn.Conv3d(1, 1, 1), rescale=RescaleToSpacingd("image", model_spacing=None), **SETTINGS)
    with pytest.raises(ValueError, match="1 output channel"):
        one.run_one(_volume(tmp_path / "v.zarr"), tmp_path / "never.ome.zarr")
    assert not (tmp_path / "never.ome.zarr").exists() and not (tmp_path / "never.ome.zarr.partial").exists()


def test_spill_sources_are_the_blocks_that_write_into_a_core():
    """Found from the block grid, they equal testing every pair, also for blocks shorter than a window."""
    from cseg_monai.inferers.block_sliding_window import BlockSlidingWindow
    from cseg_monai.workflows.large_instances import spill_sources
    from cseg_monai.workflows.large_volume import block_items

    window = BlockSlidingWindow((20, 70, 90), (8, 32, 32), overlap=0.5)
    blocks = block_items((20, 70, 90), (6, 20, 40))
    found = spill_sources(window, blocks)
    for i, core in blocks:
        brute = [j for j, other in blocks if j != i and all(max(a, c0) < min(b, c1) for (a, b), (c0, c1) in zip(window.spill_box(other), core))]
        assert sorted(found[i]) == sorted(brute), i
    assert any(len(v) >= 3 for v in found.values())
