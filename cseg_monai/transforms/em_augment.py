"""EM augmentations as MONAI dictionary transforms: what serial-section EM does to images.

Serial-section EM is cut, imaged and aligned section by section, and each step leaves its own
artefacts; a network trained on clean crops fails on them. Each transform here is a MONAI
``RandomizableTransform`` + ``MapTransform`` named ``Rand...d`` (seeded by ``set_random_state``,
or by ``Compose.set_random_state`` / MONAI's ``set_determinism``), acting on channel-first items
``(C, Z, Y, X)`` (2D ``(C, Y, X)`` where it makes sense), numpy arrays or (Meta)Tensors, and
returning the same type with its meta kept:

* geometry, applied identically to every key (image and label stay aligned; per-key ``mode``
  chooses linear or nearest interpolation):
  :class:`RandFlipTransposed` (one of the 16 flips / y-x transposes),
  :class:`RandElasticd` (smooth in-plane deformation, per volume or per section),
  :class:`RandMisalignmentd` (a slipped section, or a shift of every section after a point);
* image only (pass the image key alone): :class:`RandSectionIntensityd` (contrast, brightness,
  gamma per section or per volume), :class:`RandMissingSectiond` (a section replaced by its
  neighbours' mean or blanked), :class:`RandMissingBandd` (defect lines: a thin band of a
  section lost, at a random angle), :class:`RandMotionBlurd` (blur along one in-plane axis).

The same artefacts as pytorch_connectomics' and gunpowder's EM augmentations; the membrane and
organelle bundles can use them too.

Example:
    >>> from monai.transforms import Compose
    >>> aug = Compose([RandFlipTransposed(["image", "label"]), RandMissingSectiond("image", prob=1.0)])
    >>> _ = aug.set_random_state(0)
    >>> d = aug({"image": np.random.rand(1, 6, 32, 32).astype(np.float32), "label": np.zeros((1, 6, 32, 32), np.uint8)})
    >>> d["image"].shape, d["label"].shape
    ((1, 6, 32, 32), (1, 6, 32, 32))
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import ensure_tuple_rep
from scipy import ndimage

from cseg_monai.common.flips import FLIP_TRANSPOSE_16, apply_flip_transpose

__all__ = [
    "RandFlipTransposed",
    "RandElasticd",
    "RandMisalignmentd",
    "RandSectionIntensityd",
    "RandMissingSectiond",
    "RandMissingBandd",
    "RandMotionBlurd",
]

_MODES = {"bilinear": 1, "linear": 1, "nearest": 0}


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _like(template: Any, array: np.ndarray) -> Any:
    """``array`` as the type of ``template`` (numpy, tensor or MetaTensor with its meta)."""
    array = np.ascontiguousarray(array)
    if isinstance(template, MetaTensor):
        return MetaTensor(torch.from_numpy(array), meta=dict(template.meta))
    if isinstance(template, torch.Tensor):
        return torch.from_numpy(array).to(template.device)
    return array


def _volume(name: str, key: Hashable, shape: tuple[int, ...], need_z: bool = True) -> None:
    if len(shape) != 4 and not (len(shape) == 3 and not need_z):
        want = "(C, Z, Y, X)" if need_z else "(C, Z, Y, X) or (C, Y, X)"
        raise ValueError(f"{name}: {key!r} must be channel-first {want}, got shape {shape}")


def _check_prob(prob: float) -> float:
    if not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f"prob must lie in [0, 1], got {prob}")
    return float(prob)


def _check_range(name: str, values: Sequence[float], low: float | None = None) -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if lo > hi or (low is not None and lo < low):
        raise ValueError(f"{name} must be (low, high) with low <= high{'' if low is None else f' and low >= {low}'}, got {tuple(values)}")
    return lo, hi


class _EMAugment(RandomizableTransform, MapTransform):
    """What every transform here does per call: check the keys' shapes, draw (``randomize(shape=...)``),
    and apply (``_apply``) when drawn. ``need_z``: the transform needs sections (``(C, Z, Y, X)``, Z >= 2)."""

    need_z = False

    def __init__(self, keys: KeysCollection, prob: float, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, _check_prob(prob))

    def _shape(self, d: Mapping[Hashable, Any], need_z: bool = True) -> tuple[int, ...]:
        shapes = {}
        for key in self.key_iterator(d):
            shape = tuple(int(n) for n in d[key].shape)
            _volume(type(self).__name__, key, shape, need_z)
            shapes[key] = shape[1:]
        if len(set(shapes.values())) > 1:
            raise ValueError(f"{type(self).__name__}: the keys' spatial shapes differ: {shapes} (image and label must align)")
        return next(iter(shapes.values())) if shapes else ()

    @staticmethod
    def _depth(shape: tuple[int, ...]) -> int:
        return shape[0] if len(shape) == 3 else 1

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        shape = self._shape(d, self.need_z)
        self.randomize(shape=shape)
        if not self._do_transform or not shape or (self.need_z and shape[0] < 2):
            return d
        self._apply(d, shape)
        return d

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        raise NotImplementedError


class RandFlipTransposed(_EMAugment):
    """One of the 16 flips / y-x transposes (:data:`~cseg_monai.common.flips.FLIP_TRANSPOSE_16`), the same for every key.

    Args:
        keys: image and label keys.
        prob: chance of drawing a transform at all (the draw includes the identity).
        z_flip: also flip z (16 transforms); ``False`` or 2D items: the 8 of the (Y, X) square.
            Transposes need Y == X.

    Example:
        >>> t = RandFlipTransposed(["image", "label"]); _ = t.set_random_state(3)
        >>> x = np.arange(8).reshape(1, 2, 2, 2)
        >>> d = t({"image": x, "label": x.copy()})
        >>> bool((d["image"] == d["label"]).all()), sorted(d["image"].ravel().tolist()) == list(range(8))
        (True, True)
    """

    def __init__(self, keys: KeysCollection, prob: float = 1.0, z_flip: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.z_flip = bool(z_flip)
        self._transform = FLIP_TRANSPOSE_16[0]

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        self._transform = FLIP_TRANSPOSE_16[int(self.R.randint(16 if self.z_flip and len(shape) == 3 else 8))]

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        three_d = len(shape) == 3
        if self._transform[3] and shape[-1] != shape[-2]:
            raise ValueError(f"RandFlipTransposed: a y/x transpose needs square sections, got {shape}")
        for key in self.key_iterator(d):
            x = torch.as_tensor(_numpy(d[key]))
            out = apply_flip_transpose(x[None] if three_d else x[None, :, None], self._transform)[0]
            d[key] = _like(d[key], (out if three_d else out[:, 0]).numpy())


def _smooth_field(rng: np.random.RandomState, shape: tuple[int, int], spacing: int, magnitude: float) -> np.ndarray:
    """A (2, Y, X) displacement field: Gaussian control points every ``spacing`` px, cubic-interpolated."""
    grid = [max(2, -(-n // spacing) + 1) for n in shape]
    coarse = rng.normal(0.0, magnitude, (2, *grid))
    return np.stack([ndimage.zoom(c, [n / g for n, g in zip(shape, grid)], order=3, mode="nearest", grid_mode=True)[: shape[0], : shape[1]] for c in coarse])


class RandElasticd(_EMAugment):
    """Smooth in-plane elastic deformation, the same for every key; one field per volume or per section.

    Control points every ``control_spacing`` pixels get Gaussian displacements of standard
    deviation ``magnitude`` pixels (drawn from ``magnitude_range``), interpolated cubically into a
    dense field that moves each section's pixels (``map_coordinates``, reflecting at the border).

    Args:
        keys: image and label keys.
        prob: chance of deforming.
        control_spacing: pixels between control points (larger: smoother).
        magnitude_range: the displacement's standard deviation in pixels, drawn per call.
        per_section: a field of its own for every section (sections deform independently).
        mode: per key, ``"bilinear"`` or ``"nearest"`` (labels).

    Example:
        >>> t = RandElasticd(["image", "label"], prob=1.0, mode=("bilinear", "nearest")); _ = t.set_random_state(0)
        >>> lab = np.zeros((1, 2, 48, 48), np.uint8); lab[:, :, 10:30, 10:30] = 1
        >>> d = t({"image": lab.astype(np.float32), "label": lab})
        >>> bool((d["label"] != lab).any()), sorted(np.unique(d["label"]).tolist())
        (True, [0, 1])
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        control_spacing: int = 32,
        magnitude_range: Sequence[float] = (1.0, 3.0),
        per_section: bool = False,
        mode: str | Sequence[str] = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        if int(control_spacing) < 2:
            raise ValueError(f"control_spacing must be >= 2 pixels, got {control_spacing}")
        self.control_spacing = int(control_spacing)
        self.magnitude_range = _check_range("magnitude_range", magnitude_range, 0.0)
        self.per_section = bool(per_section)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        bad = [m for m in self.mode if m not in _MODES]
        if bad:
            raise ValueError(f"mode must be 'bilinear' or 'nearest' per key, got {bad}")
        self._fields: list[np.ndarray] = []

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        magnitude = float(self.R.uniform(*self.magnitude_range))
        n = shape[0] if self.per_section and len(shape) == 3 else 1
        self._fields = [_smooth_field(self.R, shape[-2:], self.control_spacing, magnitude) for _ in range(n)]

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        yy, xx = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
        for key, mode in self.key_iterator(d, self.mode):
            x = _numpy(d[key])
            sections = x if x.ndim == 4 else x[:, None]
            out = np.empty_like(sections)
            for z in range(sections.shape[1]):
                field = self._fields[z if len(self._fields) > 1 else 0]
                coords = np.stack([yy + field[0], xx + field[1]])
                for c in range(sections.shape[0]):
                    out[c, z] = ndimage.map_coordinates(sections[c, z], coords, order=_MODES[mode], mode="mirror")
            d[key] = _like(d[key], out if x.ndim == 4 else out[:, 0])


class RandMisalignmentd(_EMAugment):
    """A misaligned section: one section slipped by ``(dy, dx)``, or every section from one on shifted.

    The displacement is whole pixels (each axis uniform in ``[-max_displacement, max_displacement]``,
    not both 0), applied identically to every key with the border mirrored, so image and label
    stay aligned exactly.

    Args:
        keys: image and label keys.
        prob: chance of a misalignment.
        max_displacement: the largest shift in pixels.
        slip_ratio: the chance that it is a slip (one section) rather than a shift (the rest of the stack).

    Example:
        >>> t = RandMisalignmentd(["image", "label"], prob=1.0, slip_ratio=1.0); _ = t.set_random_state(1)
        >>> x = np.random.rand(1, 5, 16, 16)
        >>> d = t({"image": x, "label": x.copy()})
        >>> int((np.abs(d["image"] - x).sum(axis=(0, 2, 3)) > 0).sum()), bool((d["image"] == d["label"]).all())
        (1, True)
    """

    need_z = True

    def __init__(self, keys: KeysCollection, prob: float = 0.5, max_displacement: int = 16, slip_ratio: float = 0.5,
                 allow_missing_keys: bool = False) -> None:  # fmt: skip
        super().__init__(keys, prob, allow_missing_keys)
        if int(max_displacement) < 1:
            raise ValueError(f"max_displacement must be >= 1 pixel, got {max_displacement}")
        self.max_displacement = int(max_displacement)
        self.slip_ratio = _check_prob(slip_ratio)
        self._plan: tuple[int, bool, int, int] = (0, True, 0, 0)

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        depth = self._depth(shape)
        if not self._do_transform:
            return
        slip = bool(self.R.uniform() < self.slip_ratio)
        z = int(self.R.randint(0, depth)) if slip else int(self.R.randint(1, max(depth, 2)))
        dy = dx = 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in self.R.randint(-self.max_displacement, self.max_displacement + 1, 2))
        self._plan = (z, slip, dy, dx)

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        z, slip, dy, dx = self._plan
        moved = slice(z, z + 1) if slip else slice(z, None)
        for key in self.key_iterator(d):
            x = _numpy(d[key]).copy()
            x[:, moved] = ndimage.shift(x[:, moved], (0, 0, dy, dx), order=0, mode="mirror")
            d[key] = _like(d[key], x)


class RandSectionIntensityd(_EMAugment):
    """Contrast, brightness and gamma, per section (as sections differ in staining and exposure) or per volume.

    Per section (or volume) with its own draws: ``x <- mean + c (x - mean) + b (hi - lo)``
    (contrast ``c`` from ``contrast_range``, brightness ``b`` from ``brightness_range`` as a
    fraction of the section's range ``[lo, hi]``), then gamma ``g`` on the range:
    ``lo + (hi - lo) ((x - lo) / (hi - lo)) ** g`` (values leaving the range are clipped to it first).

    Example:
        >>> t = RandSectionIntensityd("image", prob=1.0); _ = t.set_random_state(0)
        >>> x = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (1, 3, 32, 1))
        >>> out = t({"image": x})["image"]
        >>> out.shape, out.dtype, bool(out.min() >= 0 and out.max() <= 1), bool(not np.allclose(out[0, 0], out[0, 1]))
        ((1, 3, 32, 32), dtype('float32'), True, True)
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        contrast_range: Sequence[float] = (0.8, 1.2),
        brightness_range: Sequence[float] = (-0.1, 0.1),
        gamma_range: Sequence[float] = (0.75, 1.33),
        per_section: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.contrast_range = _check_range("contrast_range", contrast_range, 0.0)
        self.brightness_range = _check_range("brightness_range", brightness_range)
        self.gamma_range = _check_range("gamma_range", gamma_range, 1e-3)
        self.per_section = bool(per_section)
        self._draws = np.ones((1, 3))

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        depth = self._depth(shape)
        if not self._do_transform:
            return
        n = depth if self.per_section else 1
        self._draws = np.stack([self.R.uniform(*r, n) for r in (self.contrast_range, self.brightness_range, self.gamma_range)], 1)

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        for key in self.key_iterator(d):
            x = _numpy(d[key])
            sections = (x if x.ndim == 4 else x[:, None]).astype(np.float32, copy=True)
            groups = [sections[:, z : z + 1] for z in range(sections.shape[1])] if len(self._draws) > 1 else [sections]
            for part, (c, b, g) in zip(groups, self._draws):
                lo, hi = float(part.min()), float(part.max())
                if hi <= lo:
                    continue
                mean = float(part.mean())
                part[...] = np.clip(mean + c * (part - mean) + b * (hi - lo), lo, hi)
                part[...] = lo + (hi - lo) * ((part - lo) / (hi - lo)) ** g
            d[key] = _like(d[key], sections if x.ndim == 4 else sections[:, 0])


def _pick_sections(rng: np.random.RandomState, depth: int, most: int) -> list[int]:
    n = int(rng.randint(1, min(most, depth) + 1))
    return sorted(int(z) for z in rng.choice(depth, n, replace=False))


class RandMissingSectiond(_EMAugment):
    """Missing sections: 1 to ``max_sections`` sections replaced by the mean of their neighbours or blanked.

    Image keys only (the label still says what the tissue holds there: the net must infer it from
    the sections around). ``mode="interpolate"`` uses the mean of the sections above and below (the
    one neighbour at the stack's ends); ``"blank"`` writes ``fill``.

    Example:
        >>> t = RandMissingSectiond("image", prob=1.0, max_sections=1, mode="blank"); _ = t.set_random_state(0)
        >>> x = np.arange(1, 6, dtype=np.float32)[None, :, None, None] * np.ones((1, 5, 4, 4), np.float32)
        >>> t({"image": x})["image"][0, :, 0, 0].tolist()  # section 4 lost
        [1.0, 2.0, 3.0, 4.0, 0.0]
    """

    need_z = True

    def __init__(self, keys: KeysCollection, prob: float = 0.3, max_sections: int = 2, mode: str = "interpolate", fill: float = 0.0,
                 allow_missing_keys: bool = False) -> None:  # fmt: skip
        super().__init__(keys, prob, allow_missing_keys)
        if mode not in ("interpolate", "blank"):
            raise ValueError(f"mode must be 'interpolate' or 'blank', got {mode!r}")
        if int(max_sections) < 1:
            raise ValueError(f"max_sections must be >= 1, got {max_sections}")
        self.mode, self.fill, self.max_sections = mode, float(fill), int(max_sections)
        self._sections: list[int] = []

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        depth = self._depth(shape)
        if self._do_transform:
            self._sections = _pick_sections(self.R, depth, self.max_sections)

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        for key in self.key_iterator(d):
            x = _numpy(d[key])
            out = x.astype(np.float32, copy=True) if self.mode == "interpolate" else x.copy()
            for z in self._sections:
                if self.mode == "blank":
                    out[:, z] = self.fill
                else:
                    near = [n for n in (z - 1, z + 1) if 0 <= n < x.shape[1]]
                    out[:, z] = np.mean([x[:, n].astype(np.float32) for n in near], axis=0)
            d[key] = _like(d[key], out.astype(x.dtype, copy=False))


class RandMissingBandd(_EMAugment):
    """Defect lines: in 1 to ``max_sections`` sections a straight band (a fold, a crack, a scratch) is lost.

    The band crosses the section through a random point at a random angle, ``width`` pixels wide
    (drawn from ``width_range``), and is set to ``fill``. Image keys only.

    Example:
        >>> t = RandMissingBandd("image", prob=1.0, width_range=(3, 3)); _ = t.set_random_state(0)
        >>> out = t({"image": np.ones((1, 2, 32, 32), np.float32)})["image"]
        >>> (out == 0).sum(axis=(0, 2, 3)).tolist()  # a band 3 px wide across the corner of section 0
        [40, 0]
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.3, max_sections: int = 1, width_range: Sequence[float] = (1.0, 4.0),
                 fill: float = 0.0, allow_missing_keys: bool = False) -> None:  # fmt: skip
        super().__init__(keys, prob, allow_missing_keys)
        self.width_range = _check_range("width_range", width_range, 0.5)
        if int(max_sections) < 1:
            raise ValueError(f"max_sections must be >= 1, got {max_sections}")
        self.max_sections, self.fill = int(max_sections), float(fill)
        self._bands: list[tuple[int, float, float, float, float]] = []

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        if not self._do_transform or not shape:
            return
        depth = shape[0] if len(shape) == 3 else 1
        self._bands = []
        for z in _pick_sections(self.R, depth, self.max_sections):
            cy, cx = float(self.R.uniform(0, shape[-2])), float(self.R.uniform(0, shape[-1]))
            self._bands.append((z, cy, cx, float(self.R.uniform(0, np.pi)), float(self.R.uniform(*self.width_range))))

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        yy, xx = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
        for key in self.key_iterator(d):
            x = _numpy(d[key]).copy()
            sections = x if x.ndim == 4 else x[:, None]
            for z, cy, cx, angle, width in self._bands:
                distance = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))  # from the line through (cy, cx)
                sections[:, z][:, distance < width / 2] = self.fill
            d[key] = _like(d[key], x)


class RandMotionBlurd(_EMAugment):
    """Motion blur along one in-plane axis (y or x, drawn), with a box kernel of ``size`` pixels.

    ``size`` is an odd number drawn from ``size_range``; each section is blurred with chance
    ``section_prob`` (1: the whole volume). Image keys only.

    Example:
        >>> t = RandMotionBlurd("image", prob=1.0, size_range=(5, 5), section_prob=1.0); _ = t.set_random_state(0)
        >>> x = np.zeros((1, 1, 9, 9), np.float32); x[0, 0, 4, 4] = 5.0
        >>> out = t({"image": x})["image"][0, 0]
        >>> sorted(np.round(out[out > 0], 3).tolist()), bool(out[4].sum() == 5 or out[:, 4].sum() == 5)
        ([1.0, 1.0, 1.0, 1.0, 1.0], True)
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.3, size_range: Sequence[int] = (3, 11), section_prob: float = 0.5,
                 allow_missing_keys: bool = False) -> None:  # fmt: skip
        super().__init__(keys, prob, allow_missing_keys)
        lo, hi = _check_range("size_range", size_range, 1.0)
        self.size_range = (int(lo), int(hi))
        self.section_prob = _check_prob(section_prob)
        self._plan: tuple[int, int, np.ndarray] = (1, -1, np.zeros(0, bool))

    def randomize(self, data: Any = None, shape: tuple[int, ...] = ()) -> None:
        super().randomize(None)
        depth = self._depth(shape)
        if not self._do_transform:
            return
        size = int(self.R.randint(self.size_range[0], self.size_range[1] + 1)) | 1  # odd: centred
        axis = -1 if self.R.uniform() < 0.5 else -2
        chosen = self.R.uniform(size=depth) < self.section_prob
        if not chosen.any():
            chosen[int(self.R.randint(depth))] = True
        self._plan = (size, axis, chosen)

    def _apply(self, d: dict[Hashable, Any], shape: tuple[int, ...]) -> None:
        size, axis, chosen = self._plan
        for key in self.key_iterator(d):
            x = _numpy(d[key])
            out = x.astype(np.float32, copy=True)
            sections = out if out.ndim == 4 else out[:, None]
            for z in np.flatnonzero(chosen):
                sections[:, z] = ndimage.uniform_filter1d(sections[:, z], size, axis=axis, mode="reflect")
            d[key] = _like(d[key], out.astype(x.dtype, copy=False) if x.dtype.kind == "f" else out)
