"""EM augmentations: seeded, aligned between image and label, each doing what its artefact does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from cseg_monai.transforms.em_augment import (
    RandElasticd,
    RandFlipTransposed,
    RandMisalignmentd,
    RandMissingBandd,
    RandMissingSectiond,
    RandMotionBlurd,
    RandSectionIntensityd,
)

RNG = np.random.default_rng(0)
IMAGE = RNG.random((1, 6, 32, 32)).astype(np.float32)
LABEL = (RNG.random((1, 6, 32, 32)) > 0.8).astype(np.uint8)

ALL = [
    lambda: RandFlipTransposed(["image", "label"]),
    lambda: RandElasticd(["image", "label"], prob=1.0, control_spacing=8, mode=("bilinear", "nearest")),
    lambda: RandMisalignmentd(["image", "label"], prob=1.0, max_displacement=4),
    lambda: RandSectionIntensityd("image", prob=1.0),
    lambda: RandMissingSectiond("image", prob=1.0),
    lambda: RandMissingBandd("image", prob=1.0),
    lambda: RandMotionBlurd("image", prob=1.0),
]


def _item():
    return {"image": IMAGE.copy(), "label": LABEL.copy()}


@pytest.mark.parametrize("make", ALL)
def test_seeded_reproducible_and_off_at_prob_zero(make):
    a, b, c = make(), make(), make()
    a.set_random_state(7)
    b.set_random_state(7)
    c.set_random_state(8)
    outs = [t(_item())["image"] for t in (a, b)]
    assert np.array_equal(outs[0], outs[1])
    assert any(not np.array_equal(a(_item())["image"], c(_item())["image"]) for _ in range(3))
    off = make()
    off.prob = 0.0
    d = off(_item())
    assert np.array_equal(d["image"], IMAGE) and np.array_equal(d["label"], LABEL)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandFlipTransposed(["image", "label"]),
        lambda: RandElasticd(["image", "label"], prob=1.0, control_spacing=8, magnitude_range=(2, 4), per_section=True, mode="nearest"),
        lambda: RandMisalignmentd(["image", "label"], prob=1.0, max_displacement=6, slip_ratio=0.5),
    ],
)
def test_geometry_moves_image_and_label_together(make):
    t = make()
    ids = np.arange(6 * 32 * 32, dtype=np.float32).reshape(1, 6, 32, 32)  # every voxel its own value
    for seed in range(4):
        t.set_random_state(seed)
        d = t({"image": ids.copy(), "label": ids.astype(np.int32)})
        assert np.array_equal(d["image"], d["label"].astype(np.float32))
        assert np.isin(d["label"], ids).all()  # nearest / whole-pixel moves: no new values


def test_flip_transpose_draws_all_16_and_keeps_2d_to_8():
    t = RandFlipTransposed(["image"])
    t.set_random_state(0)
    x = np.arange(2 * 3 * 3).reshape(1, 2, 3, 3)
    seen = {t({"image": x})["image"].tobytes() for _ in range(400)}
    assert len(seen) == 16
    seen2d = {t({"image": x[:, 0]})["image"].tobytes() for _ in range(200)}
    assert len(seen2d) == 8
    with pytest.raises(ValueError, match="square"):
        t2 = RandFlipTransposed("image")
        t2.set_random_state(1)
        for _ in range(20):
            t2({"image": np.zeros((1, 2, 4, 6))})


def test_elastic_field_is_smooth_and_of_the_asked_size():
    t = RandElasticd("image", prob=1.0, control_spacing=16, magnitude_range=(3.0, 3.0))
    t.set_random_state(0)
    yy, _ = np.meshgrid(np.arange(64, dtype=np.float32), np.arange(64, dtype=np.float32), indexing="ij")
    out = t({"image": yy[None, None]})["image"][0, 0]  # a ramp in y: the output reads off the y displacement
    shift = (out - yy)[8:-8, 8:-8]
    assert 1.0 < np.abs(shift).mean() < 6.0
    assert np.abs(np.diff(shift, axis=1)).max() < 1.5  # smooth: neighbours move alike
    per = RandElasticd("image", prob=1.0, control_spacing=16, per_section=True)
    per.set_random_state(0)
    two = per({"image": np.repeat(yy[None, None], 2, axis=1)})["image"][0]
    assert not np.allclose(two[0], two[1])


def test_misalignment_slip_and_shift():
    x = RNG.random((1, 5, 20, 20)).astype(np.float32)
    for slip in (1.0, 0.0):
        t = RandMisalignmentd("image", prob=1.0, max_displacement=3, slip_ratio=slip)
        t.set_random_state(2)
        out = t({"image": x})["image"]
        z, was_slip, dy, dx = t._plan
        moved = np.flatnonzero(np.abs(out - x).sum(axis=(0, 2, 3)) > 0).tolist()
        assert was_slip == bool(slip)
        assert moved == ([z] if was_slip else list(range(z, 5)))
        assert z >= 1 or was_slip  # a shift keeps at least the first section in place
        inner = out[0, moved[0], 3:-3, 3:-3]
        assert np.array_equal(inner, x[0, moved[0], 3 - dy : 17 - dy, 3 - dx : 17 - dx])


def test_section_intensity_per_section_or_per_volume():
    x = np.tile(np.linspace(0.1, 0.9, 32, dtype=np.float32), (1, 4, 32, 1))
    per = RandSectionIntensityd("image", prob=1.0, per_section=True)
    per.set_random_state(0)
    out = per({"image": x})["image"]
    assert out.min() >= 0.1 - 1e-6 and out.max() <= 0.9 + 1e-6
    assert len({round(float(out[0, z].mean()), 4) for z in range(4)}) == 4  # each section its own draw
    vol = RandSectionIntensityd("image", prob=1.0, per_section=False, contrast_range=(1.5, 1.5), brightness_range=(0, 0), gamma_range=(1, 1))
    vol.set_random_state(0)
    same = vol({"image": x})["image"]
    assert np.allclose(same[0, 0], same[0, 3])
    assert np.allclose(same, np.clip(0.5 + 1.5 * (x - 0.5), 0.1, 0.9), atol=1e-5)


def test_missing_section_interpolates_or_blanks():
    x = (np.arange(6, dtype=np.float32) ** 2)[None, :, None, None] * np.ones((1, 6, 4, 4), np.float32)
    t = RandMissingSectiond("image", prob=1.0, max_sections=3)
    t.set_random_state(4)
    out = t({"image": x})["image"]
    for z in range(6):
        if z in t._sections:
            near = [n for n in (z - 1, z + 1) if 0 <= n < 6]
            assert np.allclose(out[0, z], np.mean([x[0, n] for n in near], axis=0))
        else:
            assert np.array_equal(out[0, z], x[0, z])
    blank = RandMissingSectiond("image", prob=1.0, mode="blank", fill=-1.0)
    blank.set_random_state(4)
    out = blank({"image": x})["image"]
    assert sorted(np.flatnonzero((out == -1).all(axis=(0, 2, 3))).tolist()) == blank._sections


def test_missing_band_is_a_straight_band_of_its_width():
    t = RandMissingBandd("image", prob=1.0, width_range=(3.0, 3.0), fill=0.0)
    for seed in range(5):
        t.set_random_state(seed)
        out = t({"image": np.ones((1, 3, 64, 64), np.float32)})["image"]
        lost = out == 0
        z, cy, cx, angle, width = t._bands[0]
        assert lost[0, z].sum() > 0 and all(not lost[0, k].any() for k in range(3) if k != z)
        yy, xx = np.nonzero(lost[0, z])
        distance = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
        assert distance.max() < 1.5 and lost[0, z].sum() <= 3 * 64 * 1.5  # one band, 3 px across


def test_motion_blur_along_one_axis_keeps_the_mass():
    x = np.zeros((1, 2, 15, 15), np.float32)
    x[0, :, 7, 7] = 7.0
    t = RandMotionBlurd("image", prob=1.0, size_range=(7, 7), section_prob=1.0)
    t.set_random_state(0)
    out = t({"image": x})["image"]
    for z in range(2):
        rows, cols = np.nonzero(out[0, z])
        assert out[0, z].sum() == pytest.approx(7.0)
        assert (len(set(rows)) == 1 and len(cols) == 7) or (len(set(cols)) == 1 and len(rows) == 7)


def test_types_meta_and_bad_inputs():
    meta = MetaTensor(torch.from_numpy(IMAGE), meta={"filename_or_obj": "a.tif"})
    t = Compose([RandFlipTransposed(["image", "label"]), RandMotionBlurd("image", prob=1.0)])
    t.set_random_state(0)
    d = t({"image": meta, "label": torch.from_numpy(LABEL)})
    assert isinstance(d["image"], MetaTensor) and d["image"].meta["filename_or_obj"] == "a.tif"
    assert isinstance(d["label"], torch.Tensor) and d["label"].dtype == torch.uint8
    with pytest.raises(ValueError, match=r"RandMisalignmentd: 'image' must be channel-first \(C, Z, Y, X\)"):
        RandMisalignmentd("image", prob=1.0)({"image": np.zeros((1, 8, 8))})
    with pytest.raises(ValueError, match="spatial shapes differ"):
        RandElasticd(["image", "label"], prob=1.0)({"image": np.zeros((1, 2, 8, 8)), "label": np.zeros((1, 2, 8, 9))})
    with pytest.raises(ValueError, match="prob"):
        RandMotionBlurd("image", prob=2.0)
    with pytest.raises(ValueError, match="mode"):
        RandMissingSectiond("image", mode="zeros")
    with pytest.raises(ValueError, match="bilinear"):
        RandElasticd("image", mode="cubic")
