"""Membrane (cell-boundary) metrics of the ISBI 2012 EM segmentation challenge.

Plain numpy functions, no torch. Conventions used throughout:

* a *membrane mask* is binary, ``1`` (or ``True``) = membrane, ``0`` = cell interior;
* a *membrane probability* is a float array in ``[0, 1]``; the predicted mask at
  threshold ``t`` is ``prob > t`` (strictly greater);
* a *segmentation* is a non-negative integer label image; ``0`` = no segment
  (boundary), ``1..N`` = segments.

The Rand and information-theoretic scores follow Arganda-Carreras et al. 2015,
"Crowdsourcing the creation of image segmentation algorithms for connectomics",
Front. Neuroanat. 9:142, doi:10.3389/fnana.2015.00142, with the foreground restriction
of the ISBI 2012 / SNEMI3D evaluation: only pixels with ``gt > 0`` count, and pixels
with ``seg == 0`` inside the ground-truth foreground are singletons (each one is a
segment of its own). With ``p_ij`` the joint distribution of (segment ``i`` of the
proposal S, segment ``j`` of the ground truth T) over the foreground, ``s_i`` and ``t_j``
its marginals:

* Rand split  = ``sum_ij p_ij^2 / sum_j t_j^2``  (ground-truth marginal; 1 = no false splits)
* Rand merge  = ``sum_ij p_ij^2 / sum_i s_i^2``  (proposal marginal; 1 = no false merges)
* Info split  = ``I(S;T) / H(S)``;  Info merge = ``I(S;T) / H(T)``
* ``V = 2 * split * merge / (split + merge)``

:func:`isbi_scores` reproduces the official ISBI 2012 procedure (Fiji script
"Segmentation evaluation after border thinning"): thin the membranes to one pixel,
label the non-membrane pixels (4-connectivity), score, and keep the best score over a
set of thresholds of the probability map; for stacks the per-slice scores are averaged
before taking the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

__all__ = [
    "DEFAULT_THRESHOLDS",
    "pixel_error",
    "dice_score",
    "membrane_to_segmentation",
    "rand_scores",
    "info_scores",
    "isbi_scores_per_threshold",
    "isbi_scores",
]

#: default thresholds of the membrane probability: 0.05, 0.10, ..., 0.95 (19 values)
DEFAULT_THRESHOLDS: np.ndarray = np.round(np.arange(0.05, 1.0, 0.05), 2)
DEFAULT_THRESHOLDS.flags.writeable = False

# 4-connectivity (connectivity 1) for the non-membrane pixels of one 2D image
_STRUCTURE_2D = ndi.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- validation
def _as_array(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected a non-empty array")
    return arr


def _check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {name_a} has shape {a.shape} but {name_b} has shape {b.shape}")


def _check_binary(name: str, x: object) -> np.ndarray:
    """Return ``x`` as a bool array; raise unless it is non-empty and holds only 0 and 1."""
    arr = _as_array(name, x)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{name} must be a numeric or bool array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; expected a binary mask (0/1)")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])[:5]
        raise ValueError(f"{name} is not binary: it holds values other than 0 and 1, e.g. {values.tolist()}")
    return arr.astype(bool)


def _check_probability(name: str, x: object) -> np.ndarray:
    """Return ``x`` as a float array; raise unless it is non-empty, NaN-free and in [0, 1]."""
    arr = _as_array(name, x)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real-valued array of probabilities, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; expected probabilities in [0, 1]")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} holds values outside [0, 1] (min {lo:g}, max {hi:g}); expected probabilities")
    return arr


def _check_labels(name: str, x: object) -> np.ndarray:
    """Return ``x`` as an integer array; raise unless it holds non-negative integer labels."""
    arr = _as_array(name, x)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {int(arr.min())}); labels must be >= 0")
    return arr


def _check_spatial(name: str, arr: np.ndarray) -> None:
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (Y, X) or 3D (Z, Y, X), got shape {arr.shape}")


def _check_thresholds(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if thresholds is None:
        return np.array(DEFAULT_THRESHOLDS, dtype=np.float64)
    thr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1D sequence, got shape {thr.shape}")
    if np.isnan(thr).any() or thr.min() < 0.0 or thr.max() > 1.0:
        raise ValueError(f"thresholds must lie in [0, 1], got {thr.tolist()}")
    return thr


# --------------------------------------------------------------------------- pixel metrics
def pixel_error(pred_mask: np.ndarray, target_mask: np.ndarray) -> float:
    """Fraction of pixels whose membrane label differs between prediction and target.

    Args:
        pred_mask: binary predicted membrane mask (1 = membrane), any shape.
        target_mask: binary ground-truth membrane mask of the same shape.

    Returns:
        ``mean(pred_mask != target_mask)`` in ``[0, 1]``.

    Raises:
        ValueError: on empty inputs, a shape mismatch or non-binary values.

    Example:
        >>> pixel_error(np.array([[1, 0], [0, 0]]), np.array([[1, 1], [0, 0]]))
        0.25
    """
    pred = _check_binary("pred_mask", pred_mask)
    target = _check_binary("target_mask", target_mask)
    _check_same_shape("pred_mask", pred, "target_mask", target)
    return float(np.count_nonzero(pred != target)) / pred.size


def dice_score(pred_mask: np.ndarray, target_mask: np.ndarray, empty_score: float = 1.0) -> float:
    """Dice coefficient (F1) of the membrane class.

    Args:
        pred_mask: binary predicted membrane mask (1 = membrane), any shape.
        target_mask: binary ground-truth membrane mask of the same shape.
        empty_score: value returned when neither mask has a membrane pixel.

    Returns:
        ``2 |P & T| / (|P| + |T|)`` in ``[0, 1]``, or ``empty_score`` when both are empty.

    Raises:
        ValueError: on empty inputs, a shape mismatch or non-binary values.

    Example:
        >>> dice_score(np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]]))  # 2*1/(2+1)
        0.6666666666666666
    """
    pred = _check_binary("pred_mask", pred_mask)
    target = _check_binary("target_mask", target_mask)
    _check_same_shape("pred_mask", pred, "target_mask", target)
    denom = np.count_nonzero(pred) + np.count_nonzero(target)
    if denom == 0:
        return float(empty_score)
    return float(2.0 * np.count_nonzero(pred & target) / denom)


# --------------------------------------------------------------------------- thinning
def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion look-up tables of the two Guo-Hall sub-iterations (as in scikit-image).

    Index = 8-neighbourhood code with bits E=1, NE=2, N=4, NW=8, W=16, SW=32, S=64, SE=128.
    """
    n = np.arange(256)
    b = [((n >> i) & 1).astype(bool) for i in range(8)]
    g1 = sum((~b[i] & (b[i + 1] | b[(i + 2) % 8])).astype(int) for i in (0, 2, 4, 6)) == 1
    n1 = sum((b[k] | b[k - 1]).astype(int) for k in (1, 3, 5, 7))
    n2 = sum((b[k] | b[(k + 1) % 8]).astype(int) for k in (1, 3, 5, 7))
    g2 = np.isin(np.minimum(n1, n2), (2, 3))
    g3 = ~((b[1] | b[2] | ~b[7]) & b[0])
    g3p = ~((b[5] | b[6] | ~b[3]) & b[4])
    return g1 & g2 & g3, g1 & g2 & g3p


_LUT_SUB1, _LUT_SUB2 = _thin_luts()


def _thin2d(mask: np.ndarray) -> np.ndarray:
    """Morphological thinning of a 2D bool mask, identical to ``skimage.morphology.thin``.

    Same algorithm (Guo & Hall 1989, two sub-iterations, same look-up tables, zero
    padding outside the image, iterate until nothing changes) but a pixel is only
    re-examined by a sub-iteration when its 8-neighbourhood changed since that
    sub-iteration last looked at it. scikit-image re-correlates the whole image in
    every sub-iteration, which costs ~0.1 s per 512 x 512 image and dominates the
    threshold sweep of :func:`isbi_scores`; the result is bit-identical (tested).
    """
    h, w = mask.shape
    wp = w + 2
    img = np.zeros((h + 2, wp), dtype=np.uint8)
    img[1:-1, 1:-1] = mask
    flat = img.ravel()
    # neighbour offsets in the padded flat image, in bit order E, NE, N, NW, W, SW, S, SE
    offsets = np.array([1, -wp + 1, -wp, -wp - 1, -1, wp - 1, wp, wp + 1], dtype=np.intp)

    def codes(idx: np.ndarray) -> np.ndarray:
        code = np.zeros(idx.size, dtype=np.uint8)
        for bit, off in enumerate(offsets):
            code |= flat[idx + off] << np.uint8(bit)
        return code

    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return np.zeros(mask.shape, dtype=bool)
    # only pixels with a background neighbour (code != 255) can ever be deleted;
    # interior pixels become candidates when a neighbour is deleted
    border = fg[codes(fg) != 255]
    dirty = [np.zeros(flat.size, dtype=bool), np.zeros(flat.size, dtype=bool)]
    dirty[0][border] = True
    dirty[1][border] = True
    luts = (_LUT_SUB1, _LUT_SUB2)
    while True:
        deleted_any = False
        for k in (0, 1):
            idx = np.flatnonzero(dirty[k])
            if idx.size == 0:
                continue
            dirty[k][idx] = False
            delete = idx[luts[k][codes(idx)]]
            if delete.size == 0:
                continue
            deleted_any = True
            flat[delete] = 0  # simultaneous deletion, as with the full-image correlation
            neighbours = (delete[:, None] + offsets[None, :]).ravel()
            neighbours = neighbours[flat[neighbours] != 0]
            dirty[0][neighbours] = True
            dirty[1][neighbours] = True
        if not deleted_any:  # nothing changed in a full iteration: converged
            break
    return img[1:-1, 1:-1].astype(bool)


# --------------------------------------------------------------------------- segmentation
def membrane_to_segmentation(membrane_mask: np.ndarray, thin: bool = False) -> np.ndarray:
    """Label the connected components of the non-membrane pixels.

    Components use connectivity 1 (4-neighbourhood in 2D) and get ids ``1..N``;
    membrane pixels get ``0``. With ``thin=True`` the membrane is first thinned to
    one-pixel-wide curves (``skimage.morphology.thin``, Guo-Hall; our implementation
    gives the identical result faster), as in the boundary thinning of the ISBI 2012
    evaluation. Before thinning, the mask is extended by :data:`THIN_BORDER` pixels
    that repeat the border (``np.pad(mode="edge")``) and cropped back afterwards: thinning
    with the outside treated as background would pull every membrane that runs into the
    image border back from it by half its width and so join the regions on either side
    along the border (on ISBI label 20 that merges 96 regions into 73, and a prediction
    whose membranes are 5 px too thick drops from V_rand 0.96 to 0.76).

    A 3D input (Z, Y, X) is processed slice by slice (2D evaluation as in the
    challenge): every slice is thinned and labelled on its own and its ids are offset
    so that no id is shared between slices (ids run 1..N over the whole stack).

    Args:
        membrane_mask: binary membrane mask (1 = membrane), (Y, X) or (Z, Y, X).
        thin: thin the membrane to one pixel before labelling.

    Returns:
        ``int32`` label image of the same shape.

    Raises:
        ValueError: on an empty or non-binary mask, or one that is not 2D/3D.

    Example:
        >>> m = np.array([[0, 1, 0],
        ...               [0, 1, 0]])
        >>> membrane_to_segmentation(m).tolist()
        [[1, 0, 2], [1, 0, 2]]
    """
    mask = _check_binary("membrane_mask", membrane_mask)
    _check_spatial("membrane_mask", mask)
    if mask.ndim == 2:
        return _segment2d(mask, thin)
    out = np.empty(mask.shape, dtype=np.int32)
    offset = 0
    for z in range(mask.shape[0]):
        seg = _segment2d(mask[z], thin)
        n = int(seg.max())
        seg[seg > 0] += offset
        out[z] = seg
        offset += n
    return out


#: pixels of edge replication around a slice before thinning (see membrane_to_segmentation)
THIN_BORDER = 24


def _segment2d(mask: np.ndarray, thin: bool) -> np.ndarray:
    if thin:
        b = THIN_BORDER
        mask = _thin2d(np.pad(mask, b, mode="edge"))[b:-b, b:-b]
    labels = np.empty(mask.shape, dtype=np.int32)
    ndi.label(~mask, structure=_STRUCTURE_2D, output=labels)
    return labels


# --------------------------------------------------------------------------- scores
class _Contingency:
    """Foreground-restricted contingency statistics of a proposal ``seg`` vs ``gt``.

    Counts (not probabilities): ``n`` foreground pixels (``gt > 0``), ``n0`` of them
    with ``seg == 0`` (singletons), ``nij`` non-zero entries of the contingency table
    over pixels with ``seg > 0`` and ``gt > 0``, ``s`` proposal segment sizes (without
    singletons), ``t`` ground-truth segment sizes (all foreground pixels).
    """

    __slots__ = ("n", "n0", "nij", "s", "t")

    def __init__(self, seg: np.ndarray, gt: np.ndarray) -> None:
        seg = seg.ravel()
        gt = gt.ravel()
        fg = gt > 0
        g = gt[fg]
        s = seg[fg]
        self.n = int(g.size)
        labelled = s > 0
        self.n0 = int(self.n - np.count_nonzero(labelled))
        s = _compact(s[labelled])
        g_all = _compact(g)
        g_lab = g_all[labelled]
        if s.size:
            table = _contingency_table(s, g_lab, int(s.max()) + 1, int(g_all.max()) + 1)
            self.nij = table.data[table.data > 0]
            self.s = np.asarray(table.sum(axis=1)).ravel()
        else:
            self.nij = np.zeros(0)
            self.s = np.zeros(0)
        self.s = self.s[self.s > 0]
        t = np.bincount(g_all).astype(np.float64)
        self.t = t[t > 0]


def _contingency_table(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    """Sparse (n_rows, n_cols) table counting the pairs ``(rows[k], cols[k])``.

    When the dense key range is small, the pairs are first counted with ``np.bincount``
    of the combined key so the sparse matrix is built from its few non-zero cells only
    (sorting every pixel's pair in ``tocsr`` costs ~5 ms per 512 x 512 image).
    """
    if n_rows * n_cols <= max(4 * rows.size, 1 << 20):
        counts = np.bincount(rows * n_cols + cols, minlength=n_rows * n_cols)
        keys = np.flatnonzero(counts)
        rows, cols = np.divmod(keys, n_cols)
        values = counts[keys].astype(np.float64)
    else:
        values = np.ones(rows.size, dtype=np.float64)
    table = sparse.coo_matrix((values, (rows, cols)), shape=(n_rows, n_cols)).tocsr()
    table.sum_duplicates()
    return table


def _compact(labels: np.ndarray) -> np.ndarray:
    """Map labels to a dense range when their ids are much larger than their count."""
    if labels.size == 0:
        return labels.astype(np.intp)
    if int(labels.max()) <= 4 * labels.size + 1024:
        return labels.astype(np.intp, copy=False)
    return np.unique(labels, return_inverse=True)[1].ravel()


def _f_score(split: float, merge: float) -> float:
    if split + merge <= 0.0:
        return 0.0
    return 2.0 * split * merge / (split + merge)


def _rand_from(c: _Contingency) -> dict[str, float]:
    if c.n == 0:
        return {"v_rand": 1.0, "split": 1.0, "merge": 1.0}
    sum_nij2 = float(np.sum(c.nij * c.nij)) + c.n0  # every singleton is a 1-pixel cell
    sum_s2 = float(np.sum(c.s * c.s)) + c.n0
    sum_t2 = float(np.sum(c.t * c.t))
    split = min(1.0, sum_nij2 / sum_t2)
    merge = min(1.0, sum_nij2 / sum_s2)
    return {"v_rand": _f_score(split, merge), "split": split, "merge": merge}


def _entropy(counts: np.ndarray, n: int) -> float:
    p = counts / n
    return float(-np.sum(p * np.log(p)))


def _info_from(c: _Contingency) -> dict[str, float]:
    if c.n == 0:
        return {"v_info": 1.0, "split": 1.0, "merge": 1.0}
    singletons = float((c.n0 / c.n) * np.log(c.n))  # n0 cells of probability 1/n each
    h_s = max(0.0, _entropy(c.s, c.n) + singletons)
    h_t = max(0.0, _entropy(c.t, c.n))
    h_st = _entropy(c.nij, c.n) + singletons
    mutual = min(max(0.0, h_s + h_t - h_st), h_s, h_t)
    split = 1.0 if h_s == 0.0 else min(1.0, mutual / h_s)
    merge = 1.0 if h_t == 0.0 else min(1.0, mutual / h_t)
    split, merge = float(split), float(merge)
    return {"v_info": _f_score(split, merge), "split": split, "merge": merge}


def _check_seg_gt(seg: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = _check_labels("seg", seg)
    g = _check_labels("gt", gt)
    _check_same_shape("seg", s, "gt", g)
    return s, g


def rand_scores(seg: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Foreground-restricted Rand F-score (V_rand) of a segmentation against ground truth.

    Only pixels with ``gt > 0`` count; pixels with ``seg == 0`` among them are
    singletons. With ``p_ij`` the fraction of foreground pixels in proposal segment
    ``i`` and ground-truth segment ``j``, ``s_i = sum_j p_ij`` (proposal marginal) and
    ``t_j = sum_i p_ij`` (ground-truth marginal):

    * ``split = sum_ij p_ij^2 / sum_j t_j^2`` -- the probability that two pixels of the
      same ground-truth segment are also together in the proposal (recall-like; it
      drops when the proposal splits a segment);
    * ``merge = sum_ij p_ij^2 / sum_i s_i^2`` -- the probability that two pixels of the
      same proposal segment are also together in the ground truth (precision-like; it
      drops when the proposal merges segments);
    * ``v_rand = 2 * split * merge / (split + merge)``.

    Pairs are drawn with replacement (N^2 normalisation, as in the challenge code).
    Degenerate cases: an empty ground-truth foreground gives 1.0 for all three values
    (nothing can be wrong); ``split + merge == 0`` cannot happen (each is >= 1/N).

    Args:
        seg: proposed segmentation, non-negative integer labels, any shape.
        gt: ground-truth segmentation of the same shape; ``0`` = ignored background.

    Returns:
        ``{"v_rand": ..., "split": ..., "merge": ...}``, all in ``[0, 1]``.

    Raises:
        ValueError: on empty inputs, a shape mismatch, non-integer or negative labels.

    Example:
        >>> gt = np.array([[1, 1, 2, 2]])
        >>> rand_scores(np.array([[1, 1, 1, 1]]), gt)  # one merge: merge = (4+4)/16
        {'v_rand': 0.6666666666666666, 'split': 1.0, 'merge': 0.5}
    """
    s, g = _check_seg_gt(seg, gt)
    return _rand_from(_Contingency(s, g))


def info_scores(seg: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Foreground-restricted information-theoretic F-score (V_info).

    Same foreground restriction and singleton rule as :func:`rand_scores`. With
    ``H`` the (natural-log) entropy over the foreground pixels and ``I(S;T)`` the
    mutual information between proposal S and ground truth T:

    * ``split = I(S;T) / H(S)`` (drops when the proposal splits segments);
    * ``merge = I(S;T) / H(T)`` (drops when the proposal merges segments);
    * ``v_info = 2 * split * merge / (split + merge)``, 0 when both are 0.

    Degenerate cases: ``H(S) == 0`` (the proposal is one segment on the foreground,
    so it splits nothing) gives ``split = 1``; ``H(T) == 0`` (one ground-truth segment,
    nothing to merge) gives ``merge = 1``. Hence a perfect match scores 1.0 also when
    both are a single segment, one segment against two halves scores
    ``split = 1, merge = 0, v_info = 0``. An empty ground-truth foreground gives 1.0.

    Args:
        seg: proposed segmentation, non-negative integer labels, any shape.
        gt: ground-truth segmentation of the same shape; ``0`` = ignored background.

    Returns:
        ``{"v_info": ..., "split": ..., "merge": ...}``, all in ``[0, 1]``.

    Raises:
        ValueError: on empty inputs, a shape mismatch, non-integer or negative labels.

    Example:
        >>> gt = np.array([[1, 1, 2, 2]])
        >>> info_scores(np.array([[1, 1, 1, 1]]), gt)  # merge: I = 0, H(S) = 0
        {'v_info': 0.0, 'split': 1.0, 'merge': 0.0}
    """
    s, g = _check_seg_gt(seg, gt)
    return _info_from(_Contingency(s, g))


# --------------------------------------------------------------------------- ISBI 2012
def isbi_scores_per_threshold(
    prob: np.ndarray,
    target: np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
    thin: bool = True,
) -> dict[str, np.ndarray]:
    """V_rand and V_info of every image (slice) at every threshold of the probability.

    The ground-truth segmentation is ``membrane_to_segmentation(target, thin)`` and the
    proposal at threshold ``t`` is ``membrane_to_segmentation(prob > t, thin)``; both
    are scored with :func:`rand_scores` / :func:`info_scores` per 2D slice.

    Args:
        prob: membrane probability in ``[0, 1]``, (Y, X) or (Z, Y, X).
        target: binary ground-truth membrane mask (1 = membrane), same shape.
        thresholds: thresholds in ``[0, 1]``; default :data:`DEFAULT_THRESHOLDS`
            (0.05, 0.10, ..., 0.95).
        thin: thin membranes to one pixel before labelling (ISBI 2012 evaluation).

    Returns:
        ``{"thresholds": (T,), "v_rand": ..., "v_info": ...}`` where the score arrays
        have shape ``(T,)`` for a 2D input and ``(Z, T)`` for a stack.

    Raises:
        ValueError: on empty inputs, a shape mismatch, NaN or out-of-range
            probabilities, a non-binary target, invalid thresholds or a non-2D/3D shape.

    Example:
        >>> gt = np.zeros((5, 5)); gt[:, 2] = 1
        >>> out = isbi_scores_per_threshold(gt * 0.8, gt, thresholds=[0.5, 0.9])
        >>> out["v_rand"].tolist()  # at 0.9 no membrane is left: one merged region
        [1.0, 0.6666666666666666]
    """
    p = _check_probability("prob", prob)
    t = _check_binary("target", target)
    _check_same_shape("prob", p, "target", t)
    _check_spatial("prob", p)
    thr = _check_thresholds(thresholds)
    slices_p = p[None] if p.ndim == 2 else p
    slices_t = t[None] if t.ndim == 2 else t
    v_rand = np.empty((slices_p.shape[0], thr.size))
    v_info = np.empty((slices_p.shape[0], thr.size))
    for z, (pz, tz) in enumerate(zip(slices_p, slices_t)):
        gt_seg = _segment2d(tz, thin)
        for k, th in enumerate(thr):
            c = _Contingency(_segment2d(pz > th, thin), gt_seg)
            v_rand[z, k] = _rand_from(c)["v_rand"]
            v_info[z, k] = _info_from(c)["v_info"]
    if p.ndim == 2:
        v_rand, v_info = v_rand[0], v_info[0]
    return {"thresholds": thr, "v_rand": v_rand, "v_info": v_info}


def isbi_scores(
    prob: np.ndarray,
    target_membrane: np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
    thin: bool = True,
) -> dict[str, float]:
    """ISBI 2012 scores: best V_rand and V_info (after thinning) over thresholds.

    For a stack (Z, Y, X) the score at each threshold is the mean over the slices
    (as in the challenge's Fiji script), then the maximum over thresholds is taken.
    V_rand and V_info pick their best thresholds independently; on ties the lowest
    threshold wins.

    Args:
        prob: membrane probability in ``[0, 1]``, (Y, X) or (Z, Y, X).
        target_membrane: binary ground-truth membrane mask (1 = membrane), same shape.
        thresholds: thresholds in ``[0, 1]``; default 0.05, 0.10, ..., 0.95.
        thin: thin membranes to one pixel before labelling (ISBI 2012 evaluation).

    Returns:
        ``{"v_rand": best, "v_rand_threshold": t, "v_info": best, "v_info_threshold": t}``.

    Raises:
        ValueError: as :func:`isbi_scores_per_threshold`.

    Example:
        >>> gt = np.zeros((5, 5)); gt[:, 2] = 1
        >>> isbi_scores(gt * 0.8, gt, thresholds=[0.5, 0.9])
        {'v_rand': 1.0, 'v_rand_threshold': 0.5, 'v_info': 1.0, 'v_info_threshold': 0.5}
    """
    per = isbi_scores_per_threshold(prob, target_membrane, thresholds=thresholds, thin=thin)
    thr = per["thresholds"]
    out: dict[str, float] = {}
    for key in ("v_rand", "v_info"):
        scores = per[key] if per[key].ndim == 1 else per[key].mean(axis=0)
        best = int(np.argmax(scores))
        out[key] = float(scores[best])
        out[f"{key}_threshold"] = float(thr[best])
    return out
