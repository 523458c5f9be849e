"""GUI jobs: real bundle inference per uploaded volume; a bad volume is reported, the rest run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile
import torch

from cseg_monai.apps.jobs import JobParams, run_job
from cseg_monai.apps.models import find_models
from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
from cseg_monai.metrics.instances import instance_scores


@pytest.fixture(scope="module")
def nuclei_model():
    models = [m for m in find_models() if m.name.endswith(": nuclei (generalist)")]
    if not models:
        pytest.skip("the instance bundle's nuclei weights (models/model.pt) are absent")
    return models[0]


def test_job_segments_good_volumes_and_reports_bad_ones(nuclei_model, tmp_path):
    image, truth = make_nuclei_phantom((24, 80, 80), n_nuclei=8, seed=11)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    tifffile.imwrite(tmp_path / "flat.tif", image[0])
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x01" * 64)
    seen = []
    result = run_job(
        [tmp_path / "cells.tif", tmp_path / "flat.tif", tmp_path / "broken.tif", tmp_path / "cells.tif"],
        nuclei_model, JobParams(min_size=20), tmp_path / "jobs", progress=lambda f, text: seen.append((f, text)),
    )  # fmt: skip
    ok, flat, broken, again = result.volumes
    assert broken.error.startswith("broken.tif: corrupt")
    assert flat.error is None and tifffile.imread(flat.labels_path).shape[-2:] == truth.shape[1:]  # the generalist takes 2D images
    assert ok.error is None and again.error is None and again.stem == "cells_2"  # same name twice: no overwrite
    labels = tifffile.imread(ok.labels_path)
    assert labels.shape == truth.shape and labels.dtype == np.uint32 and ok.n_instances == labels.max() > 0
    assert tifffile.imread(ok.prob_path).shape == (2, *truth.shape)
    f1 = instance_scores(truth.astype(np.int64), labels.astype(np.int64), thresholds=(0.5,))["f1"][0]
    # a model trained on real nuclei, on a phantom, a sanity floor: its masked watershed keeps
    # some phantom background that the model takes for nuclei (0.42 measured; 0 for a broken run)
    assert f1 >= 0.35, f1
    assert sorted(result.files) == sorted(str(p) for v in (ok, flat, again) for p in (v.labels_path, v.prob_path))
    assert seen[-1] == (1.0, "done") and all(b >= a for (a, _), (b, _) in zip(seen, seen[1:]))
    assert "3 of 4 volume(s) done" in result.summary() and "**failed**" in result.summary()
    assert ok.scale["spacing_source"] == "unknown" and "voxel size unknown" in result.summary()  # the GUI says what it assumed


def test_parameters_reach_the_bundle(tmp_path):
    # the specialist: no object zoom, so sizes count the input's voxels (the generalist filters
    # sizes on its own grid, after zooming; documented)
    nuclei_model = next((m for m in find_models() if m.name.endswith(": nuclei, PlantSeg confocal (specialist)")), None)
    if nuclei_model is None:
        pytest.skip("the PlantSeg nuclei weights (models/model_nuclei_plantseg.pt) are absent")
    image, _ = make_nuclei_phantom((16, 64, 64), n_nuclei=8, seed=3)
    tifffile.imwrite(tmp_path / "v.tif", image)

    def sizes(**params):
        result = run_job([tmp_path / "v.tif"], nuclei_model, JobParams(patch_size=(16, 64, 64), **params), tmp_path)
        return np.sort(np.bincount(tifffile.imread(result.volumes[0].labels_path).ravel())[1:])

    every = sizes(min_size=0)
    assert len(every) >= 3, every
    cut = int(every[len(every) // 2])
    assert np.array_equal(sizes(min_size=cut), every[every >= cut])  # min object size
    assert np.array_equal(sizes(min_size=0, max_size=cut), every[every <= cut])  # max object size
    assert not np.array_equal(sizes(min_size=0, mask_watershed=False), every)  # the nuclei default floods masked


def test_bad_parameters_stop_before_anything_runs(nuclei_model, tmp_path):
    for params, message in [
        (JobParams(patch_size=(8, 60, 64)), r"patch size \(8, 60, 64\) does not fit .* 60 \(axis 1: a multiple of 8\)"),
        (JobParams(overlap=1.0), r"overlap must be in \[0, 1\)"),
        (JobParams(blend_mode="max"), "blending must be one of"),
        (JobParams(boundary_threshold=0), r"boundary threshold must be a number in \(0, 1\), got 0"),
        (JobParams(min_size=100, max_size=50), r"^max object size \(50\) must be >= min object size \(100\), or 0 for no limit$"),
        (JobParams(min_size=2.5), r"^min object size must be a whole number >= 0, got 2.5$"),
        (JobParams(instance_method="threshold"), r"^instance method must be one of .*, got 'threshold'$"),
        (JobParams(instance_method="magic"), "instance method must be one of"),
        (JobParams(object_diameter=-2.0), r"object diameter must be a number of pixels > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            run_job([tmp_path / "never.tif"], nuclei_model, params, tmp_path / "jobs")
    assert not (tmp_path / "jobs").exists()
    overrides = JobParams(max_size=0, min_size=5, mask_watershed=False, dataset="raw").overrides(nuclei_model)
    assert overrides == {  # 0 = no upper limit; dataset is no config key
        "instance_params#min_size": 5, "instance_params#max_size": None, "instance_params#mask_watershed": False
    }


def test_two_channel_volumes_run_end_to_end(nuclei_model, tmp_path):
    from cseg_monai.networks import UNet3D

    ckpt = tmp_path / "two.pt"
    torch.manual_seed(0)
    torch.save(UNet3D(in_channels=2, out_channels=2, f_maps=4, levels=3).state_dict(), ckpt)
    two = dataclasses.replace(
        nuclei_model, name="two-channel", in_channels=2, downsampling=(4, 4, 4),
        overrides={"ckpt_path": str(ckpt), "in_channels": 2, "f_maps": 4, "levels": 3},
    )  # fmt: skip
    image, _ = make_nuclei_phantom((8, 32, 32), n_nuclei=3, seed=5)
    stack = np.stack([image, 255 - image])
    tifffile.imwrite(tmp_path / "two.tif", np.moveaxis(stack, 0, 1), imagej=True, metadata={"axes": "ZCYX"})
    result = run_job([tmp_path / "two.tif"], two, JobParams(patch_size=(8, 32, 32), min_size=0), tmp_path / "jobs")
    vol = result.volumes[0]
    assert vol.error is None, vol.error
    assert tifffile.imread(vol.labels_path).shape == (8, 32, 32)
    assert tifffile.imread(vol.prob_path).shape == (2, 8, 32, 32)
    one_channel = run_job([tmp_path / "two.tif"], nuclei_model, JobParams(), tmp_path / "jobs").volumes[0]
    assert "2 channel(s), but the chosen model takes 1" in one_channel.error


def test_2d_uploads_only_for_models_that_take_planes(tmp_path):
    cells = next((m for m in find_models() if m.name.endswith(": cells (membrane stain)")), None)
    if cells is None:
        pytest.skip("the cells weights (models/model_cells.pt) are absent")
    assert not cells.single_plane_2d
    tifffile.imwrite(tmp_path / "flat.tif", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    flat = run_job([tmp_path / "flat.tif"], cells, JobParams(), tmp_path / "jobs").volumes[0]
    assert flat.error.startswith("flat.tif: a 2D image of shape (64, 64); the 3D models need a volume")


def test_a_user_given_object_diameter_replaces_the_estimate(nuclei_model, tmp_path):
    image, _ = make_nuclei_phantom((12, 64, 64), n_nuclei=6, radius_range=(7, 9), seed=4)
    tifffile.imwrite(tmp_path / "v.tif", image)
    result = run_job([tmp_path / "v.tif"], nuclei_model, JobParams(object_diameter=45.0), tmp_path / "jobs")
    vol = result.volumes[0]
    assert vol.error is None, vol.error
    assert vol.scale["object_size_source"] == "user" and vol.scale["object_zoom"] == 0.5  # chord 15 / (2/3 * 45)
    assert "object diameter from you, zoom 0.50" in result.summary()
    assert tifffile.imread(vol.labels_path).shape == image.shape  # back on the input grid
    cells = next(m for m in find_models() if m.name.endswith(": cells (membrane stain)"))
    with pytest.raises(ValueError, match="does not rescale by object size; leave the object diameter at 0"):
        run_job([tmp_path / "v.tif"], cells, JobParams(object_diameter=20.0), tmp_path / "jobs")
