"""RandSparseCentreVoxelPatchd: centres, reflect padding, class balance, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.transforms.sparse_sampling import RandSparseCentreVoxelPatchd


def _data(shape, seed=0, planes=(2,)):
    rng = np.random.default_rng(seed)
    img = torch.as_tensor(rng.random((2, *shape)).astype(np.float32))
    lab = np.full((1, *shape), 255, np.int64)
    for z in planes:
        lab[0, z] = rng.integers(0, 6, shape[1:])
    return img, torch.as_tensor(lab)


@pytest.mark.parametrize("patch", [(5, 7, 6), (3, 9, 9), (1, 4, 4)])
def test_3d_centres_and_reflect(patch):
    img, lab = _data((6, 12, 11), planes=(0, 5))
    t = RandSparseCentreVoxelPatchd(keys="image", patch_size=patch, num_samples=40)
    t.set_random_state(1)
    out = t({"image": img, "label": lab, "name": "x"})
    half = [p // 2 for p in patch]
    padded = np.pad(img.numpy(), [(0, 0)] + [(h, p - 1 - h) for h, p in zip(half, patch)], mode="reflect")
    for item in out:
        c = tuple(item["centre"].tolist())
        assert item["image"].shape == (2, *patch) and item["name"] == "x"
        assert torch.equal(item["image"][(slice(None), *half)], img[(slice(None), *c)])
        ref = padded[(slice(None),) + tuple(slice(ci, ci + p) for ci, p in zip(c, patch))]
        np.testing.assert_array_equal(item["image"].numpy(), ref)
        assert item["label"].dtype == torch.long and item["label"].tolist() == [int(lab[(0, *c)])]
        assert item["label"].item() != 255


def test_2d_edges_and_ignored_never_sampled():
    img = torch.as_tensor(np.random.default_rng(0).random((2, 10, 10)).astype(np.float32))
    lab = torch.full((1, 10, 10), 255)
    lab[0, 0, 0], lab[0, 9, 4] = 2, 5
    t = RandSparseCentreVoxelPatchd(keys=("image",), patch_size=(8, 8), num_samples=50)
    out = t({"image": img, "label": lab})
    assert {tuple(o["centre"].tolist()) for o in out} <= {(0, 0), (9, 4)}
    padded = np.pad(img.numpy(), [(0, 0), (4, 3), (4, 3)], mode="reflect")
    for o in out:
        y, x = o["centre"].tolist()
        np.testing.assert_array_equal(o["image"].numpy(), padded[:, y : y + 8, x : x + 8])
        assert o["label"].item() == int(lab[0, y, x])


def test_class_balanced_frequencies():
    lab = torch.full((1, 40, 40), 255)
    lab[0, :30, :] = 0  # 1200 voxels of class 0
    lab[0, 30, :5] = 1  # 5 voxels of class 1
    lab[0, 35, :2] = 4  # 2 voxels of class 4
    img = torch.rand(1, 40, 40)
    t = RandSparseCentreVoxelPatchd(patch_size=(3, 3), num_samples=3000, class_balanced=True)
    t.set_random_state(0)
    counts = np.bincount([o["label"].item() for o in t({"image": img, "label": lab})], minlength=6)
    assert counts[[2, 3, 5]].sum() == 0
    assert np.all(np.abs(counts[[0, 1, 4]] / 3000 - 1 / 3) < 0.05), counts
    u = RandSparseCentreVoxelPatchd(patch_size=(3, 3), num_samples=3000)
    u.set_random_state(0)
    counts = np.bincount([o["label"].item() for o in u({"image": img, "label": lab})], minlength=6)
    assert counts[0] > 2900


def test_determinism():
    img, lab = _data((4, 16, 16), planes=(1,))
    runs = []
    for _ in range(2):
        t = RandSparseCentreVoxelPatchd(patch_size=(3, 5, 5), num_samples=10, class_balanced=True)
        t.set_random_state(seed=7)
        runs.append(torch.stack([o["centre"] for o in t({"image": img, "label": lab})]))
    assert torch.equal(runs[0], runs[1])


def test_errors():
    t = RandSparseCentreVoxelPatchd(patch_size=(3, 3), num_samples=2)
    img = torch.rand(1, 6, 6)
    with pytest.raises(ValueError, match="no labelled voxel"):
        t({"image": img, "label": torch.full((1, 6, 6), 255)})
    with pytest.raises(ValueError, match=r"'image' shape .* must be"):
        t({"image": torch.rand(1, 5, 6), "label": torch.zeros(1, 6, 6)})
    with pytest.raises(ValueError, match=r"label must be \(1, Y, X\)"):
        t({"image": img, "label": torch.zeros(6, 6)})
    with pytest.raises(ValueError, match=r"label values \[6, 9\] outside \[0, 6\)"):
        t({"image": img, "label": torch.tensor([[[6, 9, 0, 255, 1, 1]] * 6])})
    with pytest.raises(ValueError, match="patch_size"):
        RandSparseCentreVoxelPatchd(patch_size=(3,))
    with pytest.raises(ValueError, match="num_samples"):
        RandSparseCentreVoxelPatchd(num_samples=0)
    with pytest.raises(ValueError, match="ignore_index"):
        RandSparseCentreVoxelPatchd(ignore_index=3)
