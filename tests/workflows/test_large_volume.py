"""Out-of-core inference: equals in-memory inference, resumes after a kill, runs on a Dask cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr
from monai.inferers import SlidingWindowInferer
from monai.transforms import NormalizeIntensity, ScaleIntensityRangePercentiles

from cseg_monai.data.block_store import OutputExistsError
from cseg_monai.data.datasets.organelles import scale_image
from cseg_monai.transforms.clefts import cleft_components
from cseg_monai.workflows import FolderRunError
from cseg_monai.workflows.large_volume import IntensityNorm, LargeVolumeInference, large_inputs, load_weights

RNG = np.random.default_rng(1)
VOLUME = RNG.integers(0, 255, (12, 40, 52)).astype(np.uint8)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3, padding=1)).eval()


def _zarr(path, volume=VOLUME, chunks=(4, 20, 26)):
    z = zarr.open_array(path, mode="w", shape=volume.shape, chunks=chunks, dtype=volume.dtype)
    z[:] = volume
    return str(path)


def _n5(path, volume=VOLUME):
    """An N5 container holding ``volume`` as ``raw`` (written by tensorstore, dimensions X first)."""
    import tensorstore as ts

    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": f"{path}/raw"}, "create": True,
            "metadata": {"dimensions": list(volume.shape[::-1]), "blockSize": [26, 20, 4], "dataType": "uint8", "compression": {"type": "gzip"}}}  # fmt: skip
    ts.open(spec).result().T.write(volume).result()
    return str(path)


def _runner(net, **kw):
    options = dict(roi_size=(8, 24, 24), overlap=0.5, activation="softmax", normalise="mean_std", labels="argmax",
                   prob_dtype="float32", block_shape=(4, 20, 26), chunks=(4, 20, 26), scheduler="synchronous", progress=False)
    options.update(kw)
    return LargeVolumeInference(net, **options)


def _in_memory(net, volume=VOLUME):
    x = NormalizeIntensity()(torch.as_tensor(volume, dtype=torch.float32))[None, None]
    with torch.no_grad():
        logits = SlidingWindowInferer((8, 24, 24), sw_batch_size=4, overlap=0.5, mode="gaussian")(x, net)
    return torch.softmax(logits.as_tensor() if hasattr(logits, "as_tensor") else logits, 1)[0].numpy()


def test_intensity_norm_is_monai_normalize_intensity():
    vol = RNG.normal(10, 3, (3, 16, 16)).astype(np.float32)
    vol[2] = 7.0  # a constant slice: std 0 divides by 1, as MONAI does
    per_slice = IntensityNorm.fit(da.from_array(vol, chunks=(1, 8, 8)), "mean_std_per_slice")
    expected = np.stack([NormalizeIntensity()(torch.as_tensor(s)).numpy() for s in vol])
    assert np.allclose(per_slice.apply(vol[1:], z0=1), expected[1:], atol=1e-5)
    whole = IntensityNorm.fit(da.from_array(vol, chunks=(1, 8, 8)), "mean_std")
    assert np.allclose(whole.apply(vol, 0), NormalizeIntensity()(torch.as_tensor(vol)).numpy(), atol=1e-5)
    rng = IntensityNorm.fit(da.from_array(vol, chunks=(1, 8, 8)), "unit_range_per_slice")  # the organelle bundle's scaling
    assert np.allclose(rng.apply(vol, 0), np.stack([scale_image(s) for s in vol]), atol=1e-6)
    as_uint8 = vol.astype(np.uint8)
    assert np.allclose(IntensityNorm.fit(da.from_array(as_uint8), "unit_range").apply(as_uint8.astype(np.float32), 0), scale_image(as_uint8))
    vol[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="scan.tif: the volume contains NaN"):
        IntensityNorm.fit(da.from_array(vol), "mean_std", name="scan.tif")
    with pytest.raises(ValueError, match="normalise"):
        IntensityNorm("zscore")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_percentile_norm_is_monai_scale_intensity_range_percentiles(dtype):
    """The cleft bundle's preprocessing (1st-99th percentile to [0, 1], clipped), from exact out-of-core percentiles."""
    vol = RNG.gamma(2.0, 900.0 if dtype != "uint8" else 30.0, (6, 40, 40)).clip(0, 60000).astype(dtype)
    norm = IntensityNorm.fit(da.from_array(vol, chunks=(2, 16, 16)), "percentiles", percentiles=(1.0, 99.0))
    expected = ScaleIntensityRangePercentiles(1.0, 99.0, 0.0, 1.0, clip=True)(torch.as_tensor(vol.astype(np.float32))).numpy()
    got = norm.apply(vol[2:].astype(np.float32), z0=2)
    assert got.min() == 0.0 and got.max() == 1.0
    assert np.allclose(got, expected[2:], atol=1e-6)
    flat = np.full((2, 8, 8), 5, np.uint16)  # constant: x - lo, clipped, as MONAI
    assert np.array_equal(IntensityNorm.fit(da.from_array(flat), "percentiles").apply(flat.astype(np.float32), 0), np.zeros(flat.shape, np.float32))


def test_blocks_equal_in_memory_inference(tmp_path):
    net = _net()
    result = _runner(net).run_one(_zarr(tmp_path / "in.zarr"), tmp_path / "out.ome.zarr")
    assert result["blocks"] == 3 * 2 * 2 and result["skipped"] == 0
    root = zarr.open_group(result["output"], mode="r")
    ref = _in_memory(net)
    assert np.allclose(root["0"][:], ref, atol=1e-5)
    assert (root["labels/segmentation/0"][:] == ref.argmax(0)).mean() > 0.9999
    assert not (tmp_path / "out.ome.zarr.partial").exists()
    again = _runner(net).run_one(tmp_path / "in.zarr", tmp_path / "out.ome.zarr")
    assert again["skipped"] == again["blocks"]  # same arguments, finished: nothing to do
    with pytest.raises(OutputExistsError, match="other arguments"):
        _runner(net, overlap=0.25).run_one(tmp_path / "in.zarr", tmp_path / "out.ome.zarr")
    uint8 = _runner(net, prob_dtype="uint8").run_one(tmp_path / "in.zarr", tmp_path / "u8.ome.zarr")
    assert np.abs(zarr.open_group(uint8["output"])["0"][:] / 255.0 - ref).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("labels", ["argmax", "components"])
def test_a_killed_run_resumes_and_gives_the_same_result(tmp_path, labels):
    src = _zarr(tmp_path / "in.zarr")
    torch.save(_net().state_dict(), tmp_path / "w.pt")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time, torch
        from cseg_monai.workflows.large_volume import LargeVolumeInference
        class Slow(torch.nn.Sequential):
            def forward(self, x):
                time.sleep(float(sys.argv[1]))
                return super().forward(x)
        torch.manual_seed(0)
        net = Slow(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3, padding=1))
        run = LargeVolumeInference(net, {str(tmp_path / 'w.pt')!r}, roi_size=(8, 24, 24), overlap=0.5, activation="softmax",
                                   normalise="mean_std", labels={labels!r}, threshold=0.4, min_size=2, prob_dtype="float32",
                                   block_shape=(4, 20, 26), chunks=(4, 20, 26), scheduler="synchronous", progress=False)
        print(run.run_one({src!r}, {str(tmp_path / 'out.ome.zarr')!r})["skipped"])
    """))
    proc = subprocess.Popen([sys.executable, str(script), "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = tmp_path / "out.ome.zarr.partial" / ".cseg_blocks_done"
    deadline = time.time() + 120
    while time.time() < deadline and (not done.is_dir() or len(list(done.iterdir())) < 3):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished_before_kill = len(list(done.iterdir()))
    assert 3 <= finished_before_kill < 12, "the run must be killed mid-way"
    assert not (tmp_path / "out.ome.zarr").exists()
    rerun = subprocess.run([sys.executable, str(script), "0"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert int(rerun.stdout.strip().splitlines()[-1]) >= finished_before_kill
    net = load_weights(_net(), tmp_path / "w.pt")
    ref = _in_memory(net)
    root = zarr.open_group(tmp_path / "out.ome.zarr")
    assert np.allclose(root["0"][:], ref, atol=1e-5)
    if labels == "components":  # pieces of the killed run and of the rerun join as whole-volume labelling joins them
        ids = root["labels/segmentation/0"][:]
        assert ids.dtype == np.uint32 and ids.max() > 1
        assert np.array_equal(ids, cleft_components(ref[0], 0.4, min_size=2))


class _FailsAfter(torch.nn.Module):
    """The test network, raising on call ``n`` (a run stopped mid-way, in this process)."""

    def __init__(self, net: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.net, self.n, self.calls = net, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("stopped mid-way")
        return self.net(x)


@pytest.mark.parametrize("normalise, threshold", [("percentiles", 0.35), ("mean_std", 0.4)])
def test_a_resumed_run_reads_its_saved_statistics_instead_of_passing_over_the_volume_again(tmp_path, monkeypatch, normalise, threshold):
    net, src = _net(), _zarr(tmp_path / "in.zarr")
    stopped = _runner(_FailsAfter(net, 6), normalise=normalise, labels="components", threshold=threshold, min_size=2)
    with pytest.raises(RuntimeError, match="stopped mid-way"):
        stopped.run_one(src, tmp_path / "out.ome.zarr")
    fitted = []
    monkeypatch.setattr(IntensityNorm, "fit", classmethod(lambda cls, *a, **k: fitted.append(a) or pytest.fail("statistics recomputed")))
    resumed = _runner(_FailsAfter(net, 0), normalise=normalise, labels="components", threshold=threshold, min_size=2)
    first = resumed.run_one(src, tmp_path / "out.ome.zarr")
    assert fitted == [] and 0 < first["skipped"] < first["blocks"]
    monkeypatch.undo()
    reference = _runner(net, normalise=normalise, labels="components", threshold=threshold, min_size=2).run_one(src, tmp_path / "ref.ome.zarr")
    out, ref = zarr.open_group(first["output"]), zarr.open_group(reference["output"])
    assert np.array_equal(out["0"][:], ref["0"][:]) and np.array_equal(out["labels/segmentation/0"][:], ref["labels/segmentation/0"][:])
    # a finished output, run again, reports what the run found (the component count), not just "skipped"
    again = resumed.run_one(src, tmp_path / "out.ome.zarr")
    assert again["skipped"] == again["blocks"] and again["components"] == first["components"] == reference["components"] > 1


@pytest.mark.slow
def test_a_local_cluster_of_two_workers_gives_the_same_result(tmp_path):
    net = _net()
    src = _zarr(tmp_path / "in.zarr")
    runner = _runner(net, scheduler=None, n_workers=2, threads_per_worker=1)
    summary = runner.run(src, tmp_path / "out")
    assert summary["n_failed"] == 0
    assert np.allclose(zarr.open_group(tmp_path / "out" / "in.ome.zarr")["0"][:], _in_memory(net), atol=1e-5)


def test_a_bad_volume_in_a_folder_costs_only_itself(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _zarr(folder / "a.zarr")
    (folder / "b.h5").write_bytes(b"not hdf5 at all")
    tifffile.imwrite(folder / "c.tif", VOLUME[:4], photometric="minisblack")
    _n5(folder / "d.n5")
    assert [p.rsplit("/", 1)[1] for p in large_inputs(folder)] == ["a.zarr", "b.h5", "c.tif", "d.n5"]
    with pytest.raises(FolderRunError, match="b.h5"):
        _runner(_net()).run(folder, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert [s["file"].rsplit("/", 1)[1] for s in summary["succeeded"]] == ["a.zarr", "c.tif", "d.n5"]
    assert (tmp_path / "out" / "a.ome.zarr").is_dir() and (tmp_path / "out" / "c.ome.zarr").is_dir()
    assert np.allclose(zarr.open_group(tmp_path / "out" / "d.ome.zarr")["0"][:], _in_memory(_net()), atol=1e-5)


def test_large_inputs_and_settings_are_checked(tmp_path):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"{z}.tif", VOLUME[z])
    assert large_inputs(tmp_path) == [str(tmp_path)]  # single-page slices: one stack
    assert large_inputs(tmp_path / "0.tif") == [str(tmp_path / "0.tif")]
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = VOLUME
    assert large_inputs(f"{tmp_path}/v.h5::raw") == [f"{tmp_path}/v.h5::raw"]
    result = _runner(_net()).run_one(f"{tmp_path}/v.h5::raw", tmp_path / "h5.ome.zarr")
    assert np.allclose(zarr.open_group(result["output"])["0"][:], _in_memory(_net()), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        large_inputs(f"{tmp_path}/nope.h5::raw")
    with pytest.raises(FileNotFoundError):
        large_inputs(tmp_path / "missing")
    with pytest.raises(ValueError, match="multiple of chunks"):
        _runner(_net(), block_shape=(4, 20, 20), chunks=(4, 16, 16))
    with pytest.raises(ValueError, match="labels"):
        _runner(_net(), labels="watershed")
    with pytest.raises(ValueError, match="overlap"):
        _runner(_net(), overlap=1.5)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        _runner(_net(), ckpt_path=tmp_path / "nope.pt")
    torch.save(torch.nn.Conv3d(1, 2, 1).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit the network"):
        _runner(_net(), ckpt_path=tmp_path / "other.pt")
