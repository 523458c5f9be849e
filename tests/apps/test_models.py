"""Which models the GUI offers: 3D bundles with shipped weights, one per inference configuration."""

from __future__ import annotations

import shutil

from cseg_monai.apps.models import find_models
from cseg_monai.workflows import bundles_dir

INSTANCE = "cell_instance_boundary_segmentation_3d"


def test_the_shipped_instance_models_are_offered_and_2d_bundles_are_not():
    models = {m.name: m for m in find_models()}
    nuclei, cells = models[f"{INSTANCE}: nuclei (generalist)"], models[f"{INSTANCE}: cells (membrane stain)"]
    assert nuclei.configs == ("inference.json",) and nuclei.ckpt_path.name == "model.pt"
    assert cells.configs == ("inference.json", "inference_cells.json") and cells.ckpt_path.name == "model_cells.pt"
    assert cells.defaults["patch_size"] == [16, 64, 64] and nuclei.defaults["patch_size"] == [8, 96, 96]
    assert nuclei.instance_params.mask_watershed is True and cells.instance_params.mask_watershed is False
    assert nuclei.downsampling == (1, 8, 8) and nuclei.in_channels == 1
    assert nuclei.single_plane_2d and not cells.single_plane_2d  # the generalist takes 2D images, the cells model does not
    plantseg = models[f"{INSTANCE}: nuclei, PlantSeg confocal (specialist)"]
    assert plantseg.ckpt_path.name == "model_nuclei_plantseg.pt" and plantseg.downsampling == (8, 8, 8)
    ctc = models[f"{INSTANCE}: nuclei, thin stacks (CTC)"]
    assert ctc.configs[-1] == "inference_nuclei_ctc.json" and ctc.downsampling == (1, 8, 8)  # z is never pooled
    assert not any(name.startswith("isbi2012") for name in models)  # 2D inputs, although it ships weights


def test_a_bundle_without_weights_is_not_offered(tmp_path):
    shutil.copytree(bundles_dir() / INSTANCE / "configs", tmp_path / INSTANCE / "configs")
    assert find_models(tmp_path) == []
    (tmp_path / INSTANCE / "models").mkdir()
    shutil.copy(bundles_dir() / INSTANCE / "models" / "model_cells.pt", tmp_path / INSTANCE / "models")
    assert [m.name for m in find_models(tmp_path)] == [f"{INSTANCE}: cells (membrane stain)"]
    assert find_models(tmp_path / "absent") == []
