"""Every picture the project draws, from one set of building blocks.

Panels are float RGB arrays in ``[0, 1]`` of shape ``(Y, X, 3)``: :func:`grey_rgb` makes one
from an image plane (0.5 / 99.5 percentile contrast), the overlays colour labels over it, and
:func:`side_by_side` joins panels with white gaps into one ``uint8`` picture (enlarged by
nearest neighbour when it is too small to see). :func:`save_png` writes a picture atomically;
:func:`learning_curve_plot` and :func:`f1_iou_plot` draw matplotlib figures to PNG files.

Example:
    >>> import numpy as np
    >>> image = np.random.rand(1, 8, 8)
    >>> overlay_picture(image, np.random.rand(1, 8, 8)).shape  # image | probability | overlay
    (8, 32, 3)
    >>> side_by_side([grey_rgb(image[0])] * 2, min_height=16).shape
    (16, 40, 3)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # pictures are files: never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from cseg_monai.common.constants import IGNORE_INDEX  # noqa: E402
from cseg_monai.data.writers import atomic_path  # noqa: E402
from cseg_monai.transforms.pretext import paste_centre_region  # noqa: E402

__all__ = [
    "CLASS_COLOURS",
    "INSTANCE_COLOURS",
    "before_after_picture",
    "class_overlay_picture",
    "cleft_picture",
    "f1_iou_plot",
    "grey_rgb",
    "instance_overlay_picture",
    "instance_slice_picture",
    "learning_curve_plot",
    "middle_plane",
    "overlay_picture",
    "reconstruction_picture",
    "save_png",
    "side_by_side",
    "track_picture",
]

#: RGB colours (0..1) of the organelle classes 0..5 (cytoplasm grey, membrane yellow,
#: mitochondrion green, mitochondrion membrane blue, synapse red, vesicle magenta).
CLASS_COLOURS = np.array(
    [[0.55, 0.55, 0.55], [1.0, 0.85, 0.1], [0.1, 0.75, 0.2], [0.1, 0.45, 1.0], [1.0, 0.1, 0.1], [0.85, 0.2, 0.95]]
)

#: A fixed pseudo-random colour per instance id (``id % 4096``), so an object keeps its colour
#: from plane to plane and picture to picture.
INSTANCE_COLOURS = np.random.default_rng(7).uniform(0.15, 1.0, (4096, 3))

_GAP = 4  # white pixels between panels


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def middle_plane(x: Any, channel_first: bool = True) -> np.ndarray:
    """``(C, [Z,] Y, X)`` -> ``(Y, X)``: the first channel's middle plane (a 2D array is kept).

    Example:
        >>> float(middle_plane(np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2))[0, 0])  # channel 0, plane 1
        4.0
    """
    x = _to_numpy(x)
    if channel_first and x.ndim >= 3:
        x = x[0]
    while x.ndim > 2:
        x = x[x.shape[0] // 2]
    return x


def grey_rgb(plane: Any, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """A grey RGB panel of a 2D plane, contrast from ``lo`` to ``hi`` (default its 0.5 / 99.5 percentiles).

    Example:
        >>> grey_rgb(np.array([[0.0, 2.0]]), 0.0, 2.0)[0, :, 0].tolist()
        [0.0, 1.0]
    """
    plane = _to_numpy(plane)
    if plane.ndim != 2:
        raise ValueError(f"grey_rgb takes a 2D plane, got shape {plane.shape}")
    if lo is None or hi is None:
        p_lo, p_hi = np.percentile(plane, (0.5, 99.5)) if plane.size else (0.0, 1.0)
        lo = float(p_lo) if lo is None else lo
        hi = float(p_hi) if hi is None else hi
    grey = np.clip((plane - lo) / max(hi - lo, 1e-8), 0, 1)
    return np.repeat(grey[..., None], 3, axis=-1)


def side_by_side(panels: Sequence[np.ndarray], gap: int = _GAP, min_height: int | None = None) -> np.ndarray:
    """Join RGB panels of one height left to right with white gaps; ``uint8`` out.

    Args:
        panels: float RGB arrays in ``[0, 1]``, all ``(Y, X_i, 3)``.
        gap: width of the white gap between panels.
        min_height: enlarge (nearest neighbour, an integer factor) to at least this many rows.

    Example:
        >>> side_by_side([np.zeros((2, 3, 3)), np.ones((2, 1, 3))], gap=1).shape
        (2, 5, 3)
    """
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    rows = {p.shape[0] for p in panels}
    if len(rows) != 1 or any(p.ndim != 3 or p.shape[2] != 3 for p in panels):
        raise ValueError(f"panels must be RGB arrays of one height, got shapes {[p.shape for p in panels]}")
    white = np.ones((panels[0].shape[0], gap, 3))
    pic = np.concatenate([x for panel in panels for x in (panel, white)][:-1], axis=1)
    if min_height is not None and pic.shape[0] < min_height:
        scale = -(-min_height // pic.shape[0])
        pic = pic.repeat(scale, axis=0).repeat(scale, axis=1)
    return (np.clip(pic, 0, 1) * 255).round().astype(np.uint8)


def reconstruction_picture(samples: Sequence[tuple[Any, Any, Any]], lo: float | None = None, hi: float | None = None, window: int = 24) -> np.ndarray:
    """Rows of ``masked input | reconstruction | original``, one row per ``(image, pred, label)`` sample.

    A pretext's prediction is either a whole patch (the VAE: ``pred`` and ``label`` have the
    image's shape) or the values of the masked centre region (centre-region regression:
    ``K = C (2r+1)^n`` values), which are pasted into the masked input, as is the true region
    (``label``), so both panels show the patch around what was predicted; the panels then show
    the ``window`` voxels around the centre, so that a small region can be seen. Masked image
    modelling's ``label`` holds one channel more than ``pred``, the mask
    (:class:`cseg_monai.transforms.MaskCubesd`): the reconstruction panel shows the prediction in the
    hidden cubes and the input elsewhere. The middle plane of 3D patches; grey from ``lo`` to
    ``hi`` on every panel (None: the 1st and 99th percentiles of the originals).

    Example:
        >>> patch = np.random.rand(1, 9, 9).astype(np.float32)
        >>> reconstruction_picture([(patch, np.ones(9), np.zeros(9))] * 2).shape  # 2 rows of 3 panels, enlarged 17x
        (374, 595, 3)
    """
    if not samples:
        raise ValueError("reconstruction_picture needs at least one (image, pred, label) sample")
    rows, triples = [], []
    for image, pred, label in samples:
        image = _to_numpy(image)
        pred, label = _to_numpy(pred), _to_numpy(label)
        if pred.shape == image.shape and label.shape == (image.shape[0] + 1, *image.shape[1:]):  # masked image modelling
            mask = label[-1:] > 0.5
            label = label[:-1]
            pred = np.where(mask, pred, image)
        elif pred.shape != image.shape:
            channels, dims = image.shape[0], image.ndim - 1
            side = round((pred.size / channels) ** (1.0 / dims))
            if side % 2 == 0 or channels * side**dims != pred.size or label.size != pred.size:
                raise ValueError(f"a prediction of {pred.size} values is neither a patch {image.shape} nor a centre region of it")
            pred = paste_centre_region(image, pred, (side - 1) // 2)
            label = paste_centre_region(image, label, (side - 1) // 2)
            # a window of at most `window` voxels around the centre, so a small region shows
            crop = (slice(None), *(slice(max(0, n // 2 - window // 2), n // 2 - window // 2 + window) for n in image.shape[1:]))
            image, pred, label = image[crop], pred[crop], label[crop]
        triples.append((image, pred, label))
    originals = np.concatenate([t[2].ravel() for t in triples])
    lo = float(np.percentile(originals, 1)) if lo is None else lo
    hi = float(np.percentile(originals, 99)) if hi is None else hi
    hi = hi if hi > lo else lo + 1.0
    for triple in triples:
        panels = [grey_rgb(middle_plane(x), lo, hi) for x in triple]
        rows.append(side_by_side(panels).astype(np.float32) / 255.0)
    white = np.ones((_GAP, rows[0].shape[1], 3), np.float32)
    stacked = np.concatenate([x for row in rows for x in (row, white)][:-1], axis=0)
    return side_by_side([stacked], min_height=360)


def similarity_picture(image: Any, pred: Sequence[Any], max_rows: int = 4) -> np.ndarray:
    """PixPro feature similarity: rows of ``view 1 (query cell in red) | view 2 | view 2 coloured by similarity``.

    For each item (up to ``max_rows``), the target feature of view 1's centre cell is compared
    (cosine) with every target feature of view 2; red shows similarity over view 2, from the map's
    lowest to its highest value (the range is relative: early in training every cell is alike).
    A pretrained encoder lights up the same structure (membrane, mitochondrion) as under the
    query, wherever the crops put it.

    Args:
        image: the batch of view pairs ``(B, 2C, *spatial)``.
        pred: :class:`cseg_monai.networks.PixPro`'s outputs (the target features are the 3rd and 4th).
        max_rows: items shown.

    Example:
        >>> feats = torch.rand(2, 8, 4, 4)
        >>> similarity_picture(torch.rand(2, 2, 16, 16), [feats] * 8).shape[2]
        3
    """
    image = _to_numpy(image)
    t1, t2 = (_to_numpy(p) for p in pred[2:4])
    if image.ndim not in (4, 5) or image.shape[1] % 2 or t1.shape != t2.shape or t1.shape[0] != image.shape[0]:
        raise ValueError(f"similarity_picture takes view pairs (B, 2C, *spatial) and PixPro outputs, got {image.shape} and {t1.shape}")
    channels = image.shape[1] // 2
    rows = []
    for b in range(min(max_rows, image.shape[0])):
        v1, v2 = middle_plane(image[b, :channels]), middle_plane(image[b, channels:])
        f1 = t1[b] if t1.ndim == 4 else t1[b][:, t1.shape[2] // 2]  # 3D features: their middle plane
        f2 = t2[b] if t2.ndim == 4 else t2[b][:, t2.shape[2] // 2]
        h, w = f1.shape[1:]
        query = f1[:, h // 2, w // 2]
        norms = np.linalg.norm(f2, axis=0) * max(float(np.linalg.norm(query)), 1e-8)
        sim = np.einsum("d,dhw->hw", query, f2) / np.maximum(norms, 1e-8)
        sim = (sim - sim.min()) / max(float(sim.max() - sim.min()), 1e-8)  # the map's own range: early features are alike everywhere
        ys, xs = v2.shape
        sim_full = np.repeat(np.repeat(sim, -(-ys // h), axis=0), -(-xs // w), axis=1)[:ys, :xs]
        left = grey_rgb(v1)
        cy, cx, sy, sx = (h // 2) * ys // h, (w // 2) * xs // w, max(1, ys // h), max(1, xs // w)
        left[cy : cy + sy, cx : cx + sx] = (1.0, 0.0, 0.0)
        grey = grey_rgb(v2)
        heat = grey * (1 - 0.6 * sim_full[..., None]) + 0.6 * sim_full[..., None] * np.array([1.0, 0.1, 0.1])
        rows.append(side_by_side([left, grey_rgb(v2), heat]).astype(np.float32) / 255.0)
    white = np.ones((_GAP, rows[0].shape[1], 3), np.float32)
    stacked = np.concatenate([x for row in rows for x in (row, white)][:-1], axis=0)
    return side_by_side([stacked], min_height=360)


def save_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an ``uint8`` RGB picture to ``path`` as PNG (atomically: a temporary file, then a rename)."""
    picture = np.asarray(picture)
    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"{path}: a picture must be uint8 (Y, X, 3), got {picture.dtype} {picture.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path


def _colour_over(grey: np.ndarray, ids: np.ndarray, where: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    out = grey.copy()
    out[where] = (1 - alpha) * grey[where] + alpha * colours[ids[where] % len(colours)]
    return out


def overlay_picture(image: Any, prob: Any, label: Any | None = None, threshold: float = 0.5) -> np.ndarray:
    """``image | probability | overlay`` of the middle plane: prediction red, ground truth green.

    Args:
        image: channel-first image ``(C, [Z,] Y, X)``.
        prob: foreground probability, same spatial shape.
        label: binary ground truth, same spatial shape, or ``None``.
        threshold: threshold of ``prob`` for the overlay.

    Returns:
        ``uint8`` array ``(Y, 3 * X + 8, 3)``.

    Example:
        >>> overlay_picture(np.random.rand(1, 8, 8), np.random.rand(1, 8, 8)).shape
        (8, 32, 3)
    """
    grey = grey_rgb(middle_plane(image))
    p = np.clip(middle_plane(prob), 0, 1)
    over = grey * 0.6
    pred = p > threshold
    over[pred, 0] = 0.4 + over[pred, 0]
    if label is not None:
        gt = middle_plane(label) > 0.5
        over[gt, 1] = np.maximum(over[gt, 1], 0.8)
    return side_by_side([grey, np.repeat(p[..., None], 3, axis=-1), over])


def cleft_picture(image: Any, prob: Any, label: Any | None = None, threshold: float = 0.5) -> np.ndarray:
    """``raw | probability | ground truth`` of the section with the most true cleft voxels (else predicted).

    Clefts are rare: the middle section may hold none, so the section is chosen by its clefts.
    The ground-truth panel shows the true clefts green and the predicted ones (``prob > threshold``)
    red over the image (yellow where both).

    Args:
        image / prob / label: channel-first ``(C, Z, Y, X)`` (or ``(C, Y, X)``) image, cleft
            probability and 0/1 ground truth (``None``: prediction only).
        threshold: the probability above which a voxel is cleft.

    Example:
        >>> p = np.zeros((1, 3, 8, 8)); p[0, 2, 2:4, 2:4] = 0.9
        >>> cleft_picture(np.random.rand(1, 3, 8, 8), p, p > 0.5).shape
        (8, 32, 3)
    """
    img, pr = _to_numpy(image)[0], np.clip(_to_numpy(prob)[0], 0, 1)
    gt = None if label is None else _to_numpy(label)[0] > 0.5
    if img.ndim == 3:
        score = (gt if gt is not None and gt.any() else pr > threshold).reshape(img.shape[0], -1).sum(1)
        z = int(np.argmax(score)) if score.any() else img.shape[0] // 2
        img, pr, gt = img[z], pr[z], None if gt is None else gt[z]
    grey = grey_rgb(img)
    over = grey * 0.6
    pred = pr > threshold
    over[pred, 0] = np.maximum(over[pred, 0], 0.9)
    if gt is not None:
        over[gt, 1] = np.maximum(over[gt, 1], 0.9)
    return side_by_side([grey, np.repeat(pr[..., None], 3, axis=-1), over])


def class_overlay_picture(
    image: Any,
    prob: Any,
    label: Any | None = None,
    grid: tuple[Sequence[int], Sequence[int]] | None = None,
    ignore_index: int = IGNORE_INDEX,
    alpha: float = 0.45,
) -> np.ndarray:
    """``image | predicted classes | ground truth`` of the middle plane, classes coloured over the image.

    Colours: :data:`CLASS_COLOURS` (more classes cycle); unlabelled ground truth
    (``ignore_index``) shows the bare image.

    Args:
        image: ``(C, [Z,] Y, X)`` image.
        prob: ``(n_classes, [Z,] Y, X)`` class probabilities or logits (argmax is shown).
        label: ``(1, [Z,] Y, X)`` class ids, or ``None``.
        grid: ``(patch_size, strides)`` when ``prob``/``label`` are the grid output of a
            centre-voxel net on the tile ``image`` (see
            :mod:`cseg_monai.transforms.centre_voxel_tiles`): the image is then sampled at the
            grid's centre voxels so the three panels align.
        ignore_index: unlabelled value of ``label``.
        alpha: opacity of the class colours.

    Returns:
        ``uint8`` array ``(Y, 3 * X + 8, 3)`` (grid pictures are enlarged to >= 256 rows).

    Example:
        >>> class_overlay_picture(np.random.rand(1, 8, 8), np.random.rand(6, 8, 8), np.zeros((1, 8, 8))).shape
        (8, 32, 3)
    """
    img = _to_numpy(image)
    p = _to_numpy(prob)
    if grid is not None:
        patch, strides = grid
        index = (slice(None),) + tuple(slice(k // 2, k // 2 + s * n, s) for k, s, n in zip(patch, strides, p.shape[1:]))
        img = img[index]
    grey = grey_rgb(middle_plane(img))
    cls = middle_plane(p.argmax(axis=0)[None]).astype(np.int64)
    colours = CLASS_COLOURS[np.arange(max(int(p.shape[0]), 1)) % len(CLASS_COLOURS)]
    panels = [grey, _colour_over(grey, cls, np.ones(cls.shape, bool), colours, alpha)]
    if label is not None:
        lab = middle_plane(label).astype(np.int64)
        known = (lab != ignore_index) & (lab >= 0) & (lab < len(colours))
        panels.append(_colour_over(grey, lab, known, colours, alpha))
    return side_by_side(panels, min_height=256 if grid is not None else None)


def before_after_picture(image: Any, prob: Any, refined: Any, label: Any, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``image | classes before | classes after | ground truth`` of the middle plane (the CRF's picture).

    Example:
        >>> before_after_picture(np.random.rand(1, 8, 8), np.random.rand(6, 8, 8), np.random.rand(6, 8, 8),
        ...                      np.zeros((8, 8))).shape
        (8, 44, 3)
    """
    grey = grey_rgb(middle_plane(image))
    colours = CLASS_COLOURS[np.arange(max(int(_to_numpy(prob).shape[0]), 1)) % len(CLASS_COLOURS)]
    panels = [grey]
    for p in (prob, refined):
        cls = middle_plane(_to_numpy(p).argmax(axis=0)[None]).astype(np.int64)
        panels.append(_colour_over(grey, cls, np.ones(cls.shape, bool), colours, 0.45))
    lab = middle_plane(_to_numpy(label)[None]).astype(np.int64)  # label: spatial, no channel
    known = (lab != ignore_index) & (lab >= 0) & (lab < len(colours))
    panels.append(_colour_over(grey, lab, known, colours, 0.45))
    return side_by_side(panels)


def instance_overlay_picture(image: Any, pred: Any, label: Any | None = None, alpha: float = 0.5) -> np.ndarray:
    """``image | predicted instances | ground-truth instances`` of the middle plane.

    ``pred`` / ``label`` are instance ids ``(1, [Z,] Y, X)`` (0 = background, shown bare),
    coloured by :data:`INSTANCE_COLOURS`. Small crops are enlarged to 256 rows.

    Example:
        >>> instance_overlay_picture(np.random.rand(1, 4, 8, 8), np.ones((1, 4, 8, 8), int)).shape  # enlarged 32x
        (256, 640, 3)
    """
    grey = grey_rgb(middle_plane(image))
    panels = [grey]
    for ids in (pred, label):
        if ids is not None:
            lab = middle_plane(ids).astype(np.int64)
            panels.append(_colour_over(grey, lab, lab > 0, INSTANCE_COLOURS, alpha))
    return side_by_side(panels, min_height=256)


def instance_slice_picture(
    plane: np.ndarray,
    ids: np.ndarray,
    boundary: np.ndarray | None = None,
    grey_range: tuple[float, float] | None = None,
    min_height: int = 360,
) -> np.ndarray:
    """``plane | instances with white outlines | boundary probability`` (the GUI's z-slice view).

    Args:
        plane: a 2D image plane.
        ids: its instance ids (0 = background).
        boundary: the boundary probability of the plane, or ``None`` (no third panel).
        grey_range: ``(lo, hi)`` contrast, e.g. the whole volume's percentiles so that the
            planes of one volume look alike; default the plane's own.
        min_height: enlarge to at least this many rows.

    Example:
        >>> instance_slice_picture(np.random.rand(8, 8), np.ones((8, 8), int), min_height=16).shape
        (16, 36, 3)
    """
    lo, hi = grey_range if grey_range is not None else (None, None)
    grey = grey_rgb(plane, lo, hi)
    ids = np.asarray(ids).astype(np.int64)
    if ids.shape != grey.shape[:2]:
        raise ValueError(f"instance ids of shape {ids.shape} do not match the plane's {grey.shape[:2]}")
    fg = ids > 0
    over = _colour_over(grey, ids, fg, INSTANCE_COLOURS, 0.55)
    over[find_boundaries(ids, mode="inner") & fg] = 1.0
    panels = [grey, over]
    if boundary is not None:
        panels.append(np.repeat(np.clip(_to_numpy(boundary), 0, 1)[..., None], 3, axis=-1))
    return side_by_side(panels, gap=2, min_height=min_height)


def track_picture(image: Any, ids: Any, truth: Any | None = None, sections: Sequence[int] | None = None, min_height: int = 160) -> np.ndarray:
    """Sections side by side with the traced ids over them (top row) and the true ids (bottom row).

    An object keeps its colour from section to section (:data:`INSTANCE_COLOURS`), so a track
    that holds is one colour along the row, and a split or a switch shows as a change of colour.

    Args:
        image: ``(Z, Y, X)`` sections.
        ids: ``(Z, Y, X)`` traced ids; ``truth``: true ids, or None (one row).
        sections: which sections (default six, evenly spaced).
        min_height: enlarge each row to at least this many pixels.

    Example:
        >>> track_picture(np.random.rand(8, 16, 16), np.ones((8, 16, 16), int), np.ones((8, 16, 16), int), min_height=16).shape
        (34, 106, 3)
    """
    img, lab = _to_numpy(image), _to_numpy(ids).astype(np.int64)
    if img.ndim != 3 or img.shape != lab.shape:
        raise ValueError(f"image {img.shape} and ids {lab.shape} must be (Z, Y, X) of one shape")
    chosen = list(sections) if sections is not None else sorted({int(round(z)) for z in np.linspace(0, img.shape[0] - 1, min(6, img.shape[0]))})
    lo, hi = np.percentile(img, (1, 99))
    rows = []
    for volume in [lab] + ([_to_numpy(truth).astype(np.int64)] if truth is not None else []):
        panels = []
        for z in chosen:
            grey = grey_rgb(img[z], lo, hi)
            panels.append(_colour_over(grey, volume[z], volume[z] > 0, INSTANCE_COLOURS, 0.6))
        rows.append(side_by_side(panels, gap=2, min_height=min_height))
    if len(rows) == 1:
        return rows[0]
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([rows[0], gap, rows[1]], axis=0)


def learning_curve_plot(
    loss: Sequence[tuple[int, float]],
    metrics: Mapping[str, Sequence[tuple[int, float]]],
    path: str | os.PathLike,
    loss_name: str = "train_loss",
) -> Path | None:
    """Training loss per iteration (with a running mean) beside validation metrics per epoch, as a PNG.

    Args:
        loss: ``(iteration, value)`` pairs.
        metrics: ``name -> (epoch, value)`` pairs.
        path: the PNG to write (atomically).
        loss_name: the loss's axis label.

    Returns:
        ``path``, or ``None`` when there is nothing to draw.

    Example:
        >>> import tempfile
        >>> p = learning_curve_plot([(1, 1.0), (2, 0.5)], {"val_dice": [(1, 0.7)]}, tempfile.mkdtemp() + "/c.png")
        >>> p.stat().st_size > 0
        True
    """
    if not loss and not any(metrics.values()):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if loss:
        steps = np.array([s for s, _ in loss])
        values = np.array([v for _, v in loss])
        axes[0].plot(steps, values, lw=0.5, alpha=0.4, label="per iteration")
        k = max(1, len(values) // 50)
        if len(values) >= k > 1:
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            axes[0].plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
        axes[0].set(xlabel="iteration", ylabel=loss_name, title="training loss")
        axes[0].legend(fontsize=7)
    for name, hist in metrics.items():
        if hist:
            hist = sorted(hist)
            axes[1].plot([s for s, _ in hist], [v for _, v in hist], marker="o", ms=3, label=name)
    axes[1].set(xlabel="epoch", title="validation")
    if axes[1].get_lines():
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def f1_iou_plot(curves: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str = "F1 vs IoU threshold") -> str:
    """F1 against the IoU threshold, one line per entry of ``curves``, as a PNG (written atomically).

    Args:
        curves: ``name -> {"thresholds": [...], "f1": [...]}`` (e.g. ``instance_scores(...)``).
        path: the PNG to write.
        title: the figure's title.

    Returns:
        ``path`` as a string.

    Example:
        >>> import tempfile, os
        >>> p = f1_iou_plot({"a": {"thresholds": [0.5, 0.75], "f1": [0.9, 0.6]}}, tempfile.mkdtemp() + "/f1.png")
        >>> os.path.getsize(p) > 0
        True
    """
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, scores in curves.items():
        ax.plot(scores["thresholds"], scores["f1"], marker="o", label=name)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0.05, 0.95)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return str(path)
