"""The pretext sampler covers every voxel of every image each epoch (the bug it replaces saw one corner)."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from cseg_monai.data.patch_sampling import CoveringPatchDataset, grid_starts


def _footprints(ds: CoveringPatchDataset, shapes: list[tuple[int, ...]], epochs: int = 1):
    covered = [np.zeros(s, np.int32) for s in shapes]
    centres = [np.zeros(s, bool) for s in shapes]
    for _ in range(epochs):
        for i in np.random.default_rng(0).permutation(len(ds)):
            item = ds[int(i)]
            window = tuple(slice(s, s + p) for s, p in zip(item["start"], ds.patch_size))
            covered[item["source"]][window] += 1
            centres[item["source"]][tuple(s + p // 2 for s, p in zip(item["start"], ds.patch_size))] = True
    return covered, centres


@pytest.mark.parametrize("shape, patch, stride", [((37, 53), (8, 8), (4, 4)), ((9, 40, 31), (4, 10, 10), (3, 5, 7)), ((16, 16), (16, 16), (8, 8))])
def test_one_epoch_covers_every_voxel_with_jitter(shape, patch, stride):
    images = [np.random.rand(1, *shape).astype(np.float32), np.random.rand(1, *(n + 3 for n in shape)).astype(np.float32)]
    ds = CoveringPatchDataset(images, patch, stride, seed=1)
    for trial in range(5):  # fresh jitter each time: the cover has no gap in any epoch
        covered, _ = _footprints(ds, [im.shape[1:] for im in images])
        assert all((c > 0).all() for c in covered), f"trial {trial}: a voxel no patch covered"
    # the patch contents are the image's: image 1 at the reported start
    item = ds[len(ds) - 1]
    window = (slice(None), *(slice(s, s + p) for s, p in zip(item["start"], patch)))
    assert np.array_equal(item["image"], images[item["source"]][window])


def test_jitter_moves_patches_between_epochs_and_centres_spread_over_the_volume():
    image = np.random.rand(1, 120, 160).astype(np.float32)
    ds = CoveringPatchDataset([image], (32, 32), (16, 16), seed=3)
    first = [ds.position(i, jitter=True)[1] for i in range(len(ds))]
    second = [ds.position(i, jitter=True)[1] for i in range(len(ds))]
    assert first != second, "the jitter must draw new positions"
    _, centres = _footprints(ds, [image.shape[1:]], epochs=3)
    # centres reach both ends of both axes and every cell of a 4 x 4 partition: no corner is favoured
    ys, xs = np.nonzero(centres[0])
    assert ys.min() == 16 and ys.max() == 120 - 16 and xs.min() == 16 and xs.max() == 160 - 16
    hist, _, _ = np.histogram2d(ys, xs, bins=(4, 4), range=((16, 105), (16, 145)))
    assert (hist > 0).all()


def test_len_and_datalist_and_transform_interface():
    ds = CoveringPatchDataset([np.zeros((1, 10, 13), np.float32)], (4, 4), (2, 2), seed=0)
    assert len(ds) == len(grid_starts(10, 4, 2)) * len(grid_starts(13, 4, 2)) == 24
    items = ds.datalist()
    assert len(items) == 24 and items[5] == {"patch_index": 5}
    out = ds({"patch_index": 5, "extra": 1})
    assert out["image"].shape == (1, 4, 4) and out["extra"] == 1
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=True)))
    assert tuple(batch["image"].shape) == (8, 1, 4, 4)
    with pytest.raises(ValueError, match="patch_index"):
        ds({"index": 1})
    with pytest.raises(IndexError, match="out of range"):
        ds.position(24)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="stack.tif \\(spatial shape \\(5, 40\\)\\), patch \\(8, 8\\): a patch of 8 voxels does not fit an axis of 5"):
        CoveringPatchDataset([np.zeros((1, 5, 40))], (8, 8), names=["stack.tif"])
    with pytest.raises(ValueError, match="expected \\(C, 2 spatial axes\\)"):
        CoveringPatchDataset([np.zeros((5, 40))], (4, 4))
    with pytest.raises(ValueError, match="stride must be in \\[1, patch\\]"):
        CoveringPatchDataset([np.zeros((1, 20, 20))], (4, 4), (5, 5))
    with pytest.raises(ValueError, match="at least one image"):
        CoveringPatchDataset([], (4, 4))
