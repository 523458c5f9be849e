"""Tracing objects through serial sections: 2D profiles linked into 3D ids.

An axon cut into serial EM sections is a chain of 2D profiles, one per section, drifting,
changing size, sometimes missing where a section is damaged. :func:`trace_sections` takes a
``(Z, Y, X)`` stack of per-section label images (ids need not agree between sections) and
gives every traced object one id over the stack:

1. every section's profiles are measured (area, centroid, equivalent diameter; physical
   units with ``spacing``);
2. the tracks alive after section ``z - 1`` (and, with ``max_skip``, those whose last profile
   is in ``z - 2``: a missing or damaged section) are linked to the profiles of section ``z``
   by :func:`scipy.optimize.linear_sum_assignment` on a cost of centroid distance (in units
   of the two profiles' mean diameter), 1 - IoU and the change of log-area (:func:`link_costs`);
   pairs beyond the gate (``max_distance`` diameters apart without overlap, or cost above
   ``max_cost``) cannot link, and leaving a track or a profile unlinked costs ``max_cost``, so
   tracks start and end where nothing fits (:func:`assign`);
3. profiles of neighbouring sections that overlap by most of the smaller one
   (``branch_overlap``) belong to one object even where the one-to-one assignment gave them
   different tracks: the object branches (one profile becomes two) or two branches join, and
   their tracks get one id. So do a track that went on into nothing and a profile that starts
   a track over it (``gap_links``): an object whose profile changed beyond the gate, as a
   cell's cap grows in anisotropic sections. Neither joins where the profiles on one side
   touch one another: cells stacked in a dense tissue, one ending, its neighbours starting;
4. crumbs (profiles under ``min_area`` pixels, bits of a label image) are not linked; once
   every section is traced, crumbs covering one another form chains, and each chain joins the
   object of the whole profile of the previous or the next section that covers the most of any
   of its crumbs (:func:`_join_crumbs`);
5. anchors (``section, y, x, id``, e.g. a few manual clicks every N sections) fix identities:
   the anchored profile takes the anchor's id. In the assignment of its section it continues
   the track of that id when one of its branches is alive and within the gate (no other track
   may take it); otherwise an unanchored track may continue into it and takes its id, or it
   starts the track (and may be gap-linked, as step 3 says). A track anchored to another id never does, so an identity switch between
   anchors is undone at the next anchor.

:func:`stitch_greedy` is the baseline: Cellpose's 3D stitching (each profile takes the id of
the previous section's profile it overlaps best, if their IoU exceeds 0.25, one profile per
id). :func:`section_profiles` makes the profiles from a probability map (bilateral
smoothing, erosion to split touching profiles, one seed per profile from the maxima of the
distance transform of its interior, watershed back to the profile's extent).

Example:
    >>> stack = np.zeros((3, 20, 20), np.int32)
    >>> stack[0, 2:8, 2:8] = 4; stack[1, 3:9, 3:9] = 9; stack[2, 4:10, 4:10] = 1  # one drifting profile
    >>> stack[2, 14:18, 14:18] = 2  # a new one
    >>> ids, tracks = trace_sections(stack)
    >>> [int(ids[z][stack[z] > 0].max()) for z in range(3)], len({t["id"] for t in tracks})
    ([1, 1, 2], 2)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage.morphology import disk, h_maxima
from skimage.restoration import denoise_bilateral
from skimage.segmentation import expand_labels, watershed

from cseg_monai.common.checks import check_instance_ids, check_spacing
from cseg_monai.data.writers import atomic_path

__all__ = [
    "LinkParams",
    "TRACK_FIELDS",
    "assign",
    "link_costs",
    "profile_table",
    "read_anchors",
    "section_profiles",
    "stitch_greedy",
    "trace_sections",
    "write_tracks",
]

#: the columns of a tracks table (one row per traced profile).
TRACK_FIELDS = ("id", "section", "centroid_y", "centroid_x", "area", "link_cost", "profile")
_FORBIDDEN = 1e9


@dataclass(frozen=True)
class LinkParams:
    """How profiles of neighbouring sections are linked (see the module docstring).

    Attributes:
        w_distance / w_iou / w_area: weights of centroid distance (in mean diameters), 1 - IoU and
            ``|log(area ratio)|`` in the link cost.
        max_distance: centroids further apart than this many mean diameters cannot link unless the profiles overlap.
        min_iou: profiles overlapping less (IoU) cannot link, unless they do not overlap at all and
            lie within ``max_distance`` (a profile drifting off its predecessor, a shifted section):
            where one object ends and another starts over it, their profiles overlap a little.
        max_cost: the gate: dearer links are not made; a track or profile left unlinked costs this much.
        max_skip: sections a track may jump (0: none; 1: one missing or damaged section).
        skip_penalty: added to the cost of a link that jumps a section.
        branch_overlap: profiles of neighbouring sections overlapping by at least this fraction of
            the smaller one are one object (branches and joins get one id); 0 disables.
        min_area: profiles of fewer pixels are crumbs (a few pixels cut off from a profile), not
            linked on their own and never continued: chains of crumbs covering one another take
            the id of the whole profile of the previous or the next section that covers the most
            of one of them, at least half (the previous on a tie), else one new id.
        gap_links: join a track that went on into no profile of the next section with a profile
            of that section which starts a track and overlaps it by ``branch_overlap`` of the
            smaller (see the module docstring); False: such objects split where the gate stops them.
            Off, as the branches are, when ``branch_overlap`` is 0.

    Example:
        >>> LinkParams(max_skip=0).replace(max_cost=2.0).max_cost
        2.0
    """

    w_distance: float = 1.0
    w_iou: float = 1.0
    w_area: float = 0.5
    max_distance: float = 1.0
    min_iou: float = 0.2
    max_cost: float = 1.6
    max_skip: int = 1
    skip_penalty: float = 0.25
    branch_overlap: float = 0.5
    min_area: int = 20
    gap_links: bool = True

    def __post_init__(self) -> None:
        for name in ("w_distance", "w_iou", "w_area", "max_distance", "min_iou", "max_cost", "skip_penalty", "branch_overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"LinkParams.{name} must be a finite number >= 0, got {value!r}")
        if self.max_cost <= 0:
            raise ValueError(f"LinkParams.max_cost must be > 0, got {self.max_cost}")
        if self.branch_overlap > 1 or self.min_iou > 1:
            raise ValueError(f"LinkParams.branch_overlap and min_iou are fractions in [0, 1], got {self.branch_overlap}, {self.min_iou}")
        if isinstance(self.min_area, bool) or not isinstance(self.min_area, int) or self.min_area < 0:
            raise ValueError(f"LinkParams.min_area must be a pixel count >= 0, got {self.min_area!r}")
        if not isinstance(self.gap_links, bool):
            raise ValueError(f"LinkParams.gap_links must be true or false, got {self.gap_links!r}")
        if isinstance(self.max_skip, bool) or not isinstance(self.max_skip, int) or self.max_skip not in (0, 1):
            raise ValueError(f"LinkParams.max_skip must be 0 or 1, got {self.max_skip!r}")

    def replace(self, **changes: Any) -> LinkParams:
        """A copy with ``changes`` (unknown names are an error)."""
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown LinkParams settings {sorted(unknown)}; known: {sorted(asdict(self))}")
        return replace(self, **changes)


def _check_stack(stack: np.ndarray, name: str = "profiles") -> np.ndarray:
    arr = check_instance_ids(stack, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a (Z, Y, X) stack of per-section label images, got shape {arr.shape}")
    return arr


def _spacing(spacing: Sequence[float] | None) -> tuple[float, float]:
    """The (Y, X) pixel size of a (Y, X) or (Z, Y, X) spacing (1, 1 when None)."""
    if spacing is None:
        return 1.0, 1.0
    values = list(spacing)
    sy, sx = check_spacing(values[-2:] if len(values) == 3 else values, 2, "spacing", max_anisotropy=None)
    return sy, sx


def profile_table(section: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The profiles of one section: ``label``, ``area`` (pixels), ``centroid`` ``(K, 2)`` and
    ``diameter`` (of the circle of equal area), the last two in the units of ``spacing``.

    Example:
        >>> t = profile_table(np.array([[0, 3, 3], [0, 3, 3]]))
        >>> t["label"].tolist(), t["area"].tolist(), t["centroid"].tolist()
        ([3], [4], [[0.5, 1.5]])
    """
    sec = np.asarray(section)
    sy, sx = _spacing(spacing)
    labels, inverse, area = np.unique(sec.reshape(-1), return_inverse=True, return_counts=True)
    yy, xx = np.indices(sec.shape)
    cy = np.bincount(inverse, weights=yy.reshape(-1)) / area
    cx = np.bincount(inverse, weights=xx.reshape(-1)) / area
    keep = labels > 0
    centroid = np.stack([cy[keep] * sy, cx[keep] * sx], axis=1) if keep.any() else np.zeros((0, 2))
    diameter = 2.0 * np.sqrt(area[keep] * sy * sx / np.pi)
    return {"label": labels[keep], "area": area[keep].astype(np.int64), "centroid": centroid, "diameter": diameter}


def _overlaps(a: np.ndarray, b: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """Pixel overlaps ``(len(labels_a), len(labels_b))`` of two label images."""
    both = (a > 0) & (b > 0)
    out = np.zeros((len(labels_a), len(labels_b)), np.int64)
    if both.any() and len(labels_a) and len(labels_b):
        ia = np.searchsorted(labels_a, a[both])
        ib = np.searchsorted(labels_b, b[both])
        np.add.at(out, (ia, ib), 1)
    return out


def link_costs(prev: Mapping[str, np.ndarray], nxt: Mapping[str, np.ndarray], overlap: np.ndarray, params: LinkParams) -> np.ndarray:
    """The cost of linking each profile of ``prev`` to each of ``nxt`` (``inf`` beyond the gate).

    Args:
        prev / nxt: :func:`profile_table` tables.
        overlap: their pixel overlaps, ``(len(prev), len(nxt))``.
        params: weights and gate.

    Example:
        >>> a = {"area": np.array([100]), "centroid": np.array([[10.0, 10.0]]), "diameter": np.array([11.3])}
        >>> b = {"area": np.array([100]), "centroid": np.array([[10.0, 40.0]]), "diameter": np.array([11.3])}
        >>> link_costs(a, a, np.array([[100]]), LinkParams()).tolist(), link_costs(a, b, np.array([[0]]), LinkParams()).tolist()
        ([[0.0]], [[inf]])
    """
    ap, an = np.asarray(prev["area"], float)[:, None], np.asarray(nxt["area"], float)[None, :]
    dist = np.linalg.norm(np.asarray(prev["centroid"])[:, None, :] - np.asarray(nxt["centroid"])[None, :, :], axis=-1)
    scale = 0.5 * (np.asarray(prev["diameter"])[:, None] + np.asarray(nxt["diameter"])[None, :])
    rel = dist / np.maximum(scale, 1e-9)
    iou = overlap / np.maximum(ap + an - overlap, 1.0)
    cost = params.w_distance * rel + params.w_iou * (1.0 - iou) + params.w_area * np.abs(np.log(an / ap))
    cost[(rel > params.max_distance) & (overlap == 0)] = np.inf
    cost[(overlap > 0) & (iou < params.min_iou)] = np.inf
    cost[cost > params.max_cost] = np.inf
    return cost


def assign(cost: np.ndarray, unlinked: float) -> list[tuple[int, int]]:
    """Rows linked to columns at the least total cost, each row and column at most once; leaving
    either unlinked costs ``unlinked``; ``inf`` entries are never linked.

    Example:
        >>> assign(np.array([[0.1, 0.5], [0.2, np.inf]]), unlinked=1.0)
        [(0, 1), (1, 0)]
        >>> assign(np.array([[3.0]]), unlinked=1.0)  # cheaper to end the row and start the column
        []
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    big = np.full((n + m, m + n), _FORBIDDEN)
    finite = np.where(np.isfinite(cost), cost, _FORBIDDEN)
    big[:n, :m] = finite
    big[np.arange(n), m + np.arange(n)] = unlinked  # row ends
    big[n + np.arange(m), np.arange(m)] = unlinked  # column starts
    big[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(big)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if r < n and c < m and finite[r, c] < _FORBIDDEN]


def read_anchors(path: str | os.PathLike) -> list[tuple[int, float, float, int]]:
    """Anchor seeds from a CSV with the columns ``section, y, x, id`` (a header row, pixels, ids >= 1).

    Raises:
        FileNotFoundError: no such file. ValueError: missing columns or bad values, naming the file and row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"anchors file {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"section", "y", "x", "id"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: the anchors CSV needs the columns section, y, x, id; missing {sorted(missing)}")
        out = []
        for row_no, row in enumerate(reader, start=2):
            try:
                anchor = (int(row["section"]), float(row["y"]), float(row["x"]), int(row["id"]))
            except (TypeError, ValueError):
                raise ValueError(f"{path} row {row_no}: not numbers: {dict(row)}") from None
            if anchor[0] < 0 or anchor[3] < 1:
                raise ValueError(f"{path} row {row_no}: section must be >= 0 and id >= 1, got {dict(row)}")
            out.append(anchor)
    return out


def _anchor_ids(stack: np.ndarray, anchors: Sequence[tuple[int, float, float, int]]) -> dict[tuple[int, int], int]:
    """``{(section, label): anchor id}``: the profile under each anchor point."""
    fixed: dict[tuple[int, int], int] = {}
    for section, y, x, anchor_id in anchors:
        if not 0 <= section < stack.shape[0]:
            raise ValueError(f"anchor ({section}, {y}, {x}, id {anchor_id}): section outside the stack's {stack.shape[0]} sections")
        iy, ix = int(round(y)), int(round(x))
        if not (0 <= iy < stack.shape[1] and 0 <= ix < stack.shape[2]):
            raise ValueError(f"anchor ({section}, {y}, {x}, id {anchor_id}): outside the sections' {stack.shape[1:]} pixels")
        label = int(stack[section, iy, ix])
        if label == 0:
            continue  # on background: no profile to fix
        if fixed.get((section, label), anchor_id) != anchor_id:
            raise ValueError(f"section {section}: one profile carries two anchor ids ({fixed[(section, label)]} and {anchor_id})")
        fixed[(section, label)] = anchor_id
    per_section: dict[int, set[int]] = {}
    for (section, _), anchor_id in fixed.items():
        if anchor_id in per_section.setdefault(section, set()):
            raise ValueError(f"section {section}: anchor id {anchor_id} is on two profiles")
        per_section[section].add(anchor_id)
    return fixed


def _touching(section: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(K, K)`` bool: which profiles of a section touch (8-connected neighbours)."""
    out = np.zeros((len(labels), len(labels)), bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = section[max(-dy, 0) : section.shape[0] - max(dy, 0), max(-dx, 0) : section.shape[1] - max(dx, 0)]
        b = section[max(dy, 0) :, max(dx, 0) :][: a.shape[0], : a.shape[1]] if dx >= 0 else section[dy:, : section.shape[1] + dx]
        pair = (a > 0) & (b > 0) & (a != b)
        if pair.any():
            ia, ib = np.searchsorted(labels, a[pair]), np.searchsorted(labels, b[pair])
            out[ia, ib] = out[ib, ia] = True
    return out


def _map_labels(section: np.ndarray, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[k]`` where ``section == labels[k]`` (``labels`` sorted), 0 elsewhere; no table sized by the largest id."""
    out = np.zeros(section.shape, np.uint32)
    fg = section > 0
    if fg.any():
        out[fg] = values[np.searchsorted(labels, section[fg])]
    return out


def _find(parent: dict[int, int], t: int) -> int:
    root = t
    while parent.get(root, root) != root:
        root = parent[root]
    while parent.get(t, t) != root:  # path compression
        parent[t], t = root, parent[t]
    return root


def _union(parent: dict[int, int], a: int, b: int, anchored: set[int]) -> None:
    """Join the groups of tracks ``a`` and ``b``; an anchored id is the root; two anchored ids never join."""
    ra, rb = _find(parent, a), _find(parent, b)
    if ra == rb or (ra in anchored and rb in anchored):
        return
    if rb in anchored or (ra not in anchored and rb < ra):
        ra, rb = rb, ra
    parent[rb] = ra


def _join_crumbs(stack: np.ndarray, tables: list[dict[str, np.ndarray]], track_of: list[np.ndarray], crumbs_of: list[np.ndarray],
                 min_area: int, parent: dict[int, int], anchored: set[int]) -> None:  # fmt: skip
    """Join the crumbs (``crumbs_of``: per section, the indices of its profiles under ``min_area``
    pixels) to the objects of neighbouring sections, once every section is traced.

    A profile of section ``z - 1`` or ``z + 1`` covers a crumb when it holds at least half of its
    pixels. Crumbs that cover one another form chains (the crumbs of a tapering end, each under
    ``min_area``); each chain joins the object of the whole profile that covers the most pixels of
    any of its crumbs (the previous section's on a tie). Not only the previous section: a crumb
    where an object starts lies over the profile of another object in ``z - 1`` in a dense tissue,
    and over its own in ``z + 1``."""
    chain: dict[tuple[int, int], tuple[int, int]] = {}  # union-find of crumbs (section, index)

    def root(a: tuple[int, int]) -> tuple[int, int]:
        while chain.get(a, a) != a:
            a = chain[a]
        return a

    best: dict[tuple[int, int], tuple[int, bool, int]] = {}  # chain root -> (pixels covered, previous section, track)
    covers: list[tuple[tuple[int, int], tuple[int, bool, int]]] = []
    for z, crumbs in enumerate(crumbs_of):
        if not len(crumbs):
            continue
        labels = tables[z]["label"]
        ys, xs = np.nonzero(np.isin(stack[z], labels[crumbs]))
        which = np.searchsorted(labels, stack[z][ys, xs])
        for c in crumbs:
            cy, cx = ys[which == c], xs[which == c]
            for k in (z - 1, z + 1):
                if not 0 <= k < stack.shape[0]:
                    continue
                under = stack[k][cy, cx]
                ids, count = np.unique(under[under > 0], return_counts=True)
                for lab, n in zip(ids, count):
                    if n < 0.5 * len(cy):
                        continue
                    idx = int(np.searchsorted(tables[k]["label"], lab))
                    if tables[k]["area"][idx] < min_area:  # another crumb: one chain
                        ra, rb = root((z, int(c))), root((k, idx))
                        if ra != rb:
                            chain[rb] = ra
                    else:
                        covers.append(((z, int(c)), (int(n), k < z, int(track_of[k][idx]))))
    for member, cover in covers:
        r = root(member)
        if cover[:2] > best.get(r, (0, False, 0))[:2]:
            best[r] = cover
    for z, crumbs in enumerate(crumbs_of):
        for c in crumbs:
            r = root((z, int(c)))
            if r in best:
                _union(parent, best[r][2], int(track_of[z][c]), anchored)
            elif r != (z, int(c)):  # a chain no whole profile covers: one object of its own
                _union(parent, int(track_of[r[0]][r[1]]), int(track_of[z][c]), anchored)


def trace_sections(
    profiles: np.ndarray,
    spacing: Sequence[float] | None = None,
    params: LinkParams | None = None,
    anchors: Sequence[tuple[int, float, float, int]] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Link the profiles of a section stack into 3D objects (see the module docstring).

    Args:
        profiles: ``(Z, Y, X)`` non-negative integer labels; each section's ids on their own.
        spacing: voxel size ``(Z, Y, X)`` or ``(Y, X)``; distances are relative to profile size, so it only matters when anisotropic in Y / X.
        params: link settings (default :class:`LinkParams`).
        anchors: ``(section, y, x, id)`` seeds fixing identities.

    Returns:
        ``(ids, tracks)``: ``uint32`` 3D ids (0 background) and one dict per traced profile
        with :data:`TRACK_FIELDS` (``link_cost`` None where a track starts or a profile branches off).

    Raises:
        ValueError: a stack that is not 3D integer labels, bad anchors.
    """
    stack = _check_stack(profiles)
    p = params or LinkParams()
    fixed = _anchor_ids(stack, anchors or [])
    anchor_ids = set(fixed.values())
    parent: dict[int, int] = {}
    next_id = max(fixed.values(), default=0) + 1
    ids = np.zeros(stack.shape, np.uint32)
    tables = [profile_table(stack[z], spacing) for z in range(stack.shape[0])]
    track_of: list[np.ndarray] = []  # per section: the track id of each profile
    crumbs_of: list[np.ndarray] = []  # per section: the indices of its crumbs
    tracks: list[dict[str, Any]] = []
    last_seen: dict[int, tuple[int, int]] = {}  # track id -> (section, profile index) of its last profile
    touching: dict[int, np.ndarray] = {}  # per section, computed once (a section is "next", then "previous")
    for z, table in enumerate(tables):
        labels = table["label"]
        # the overlaps with the previous section, used by the links and the branches
        prev_overlap = _overlaps(stack[z - 1], stack[z], tables[z - 1]["label"], labels) if z > 0 else np.zeros((0, len(labels)), np.int64)
        assigned = np.zeros(len(labels), np.int64)
        costs_in: list[float | None] = [None] * len(labels)
        anchored = {k: fixed[(z, int(lab))] for k, lab in enumerate(labels) if (z, int(lab)) in fixed}
        crumb = (table["area"] < p.min_area) & ~np.isin(np.arange(len(labels)), list(anchored))
        # candidate tracks: those whose last profile is in z - 1, or in z - 2 (a jumped section)
        cands = [(t, s, i) for t, (s, i) in last_seen.items() if s == z - 1 or (p.max_skip and s == z - 2)]
        if cands and len(labels):
            cost = np.full((len(cands), len(labels)), np.inf)
            for s in {s for _, s, _ in cands}:
                rows = [r for r, (_, cs, _) in enumerate(cands) if cs == s]
                prev = tables[s]
                overlap = prev_overlap if s == z - 1 else _overlaps(stack[s], stack[z], prev["label"], labels)
                block = link_costs(prev, table, overlap, p) + (p.skip_penalty if s < z - 1 else 0.0)
                cost[rows] = block[[cands[r][2] for r in rows]]
            cost[:, crumb] = np.inf
            roots = [_find(parent, t) for t, _, _ in cands]
            for col, anchor_id in anchored.items():
                own = [r for r, root in enumerate(roots) if root == anchor_id and np.isfinite(cost[r, col])]
                if own:  # the anchored profile continues its own track (of its branches within the gate, the nearest)
                    best = own[int(np.argmin(cost[own, col]))]
                    cost[:, col] = np.inf
                    cost[best, :] = np.inf
                    cost[best, col] = 0.0
                else:  # ... or an unanchored one, which takes its id, or it starts
                    cost[[r for r, root in enumerate(roots) if root in anchor_ids], col] = np.inf
            for r, c in assign(cost, p.max_cost):
                assigned[c] = cands[r][0]
                costs_in[c] = float(cost[r, c])
        started = (assigned == 0) & ~crumb  # profiles no track continued into (anchored ones included)
        for col, anchor_id in anchored.items():
            if assigned[col] == 0:
                assigned[col] = anchor_id
            else:
                _union(parent, anchor_id, int(assigned[col]), anchor_ids)
        # new ids: the other profiles that start a track here, and crumbs (joined to a neighbour's object once all sections are traced)
        fresh = np.flatnonzero(assigned == 0)
        assigned[fresh] = next_id + np.arange(len(fresh))
        next_id += len(fresh)
        if z > 0 and p.branch_overlap > 0 and len(tables[z - 1]["label"]) and len(labels):
            # branches and joins: profiles overlapping by most of the smaller one are one object
            overlap = prev_overlap
            smaller = np.minimum(tables[z - 1]["area"][:, None], table["area"][None, :])
            strong = (overlap >= p.branch_overlap * smaller) & (tables[z - 1]["area"][:, None] >= p.min_area) & ~crumb[None, :]
            went_on = track_of[z - 1][:, None] == assigned[None, :]  # the assignment continued the track
            # a branch: a profile whose track went on into one strongly overlapping profile, and
            # another strongly overlapping profile, which does not touch that one, started; a join:
            # the other way round. Touching profiles are two objects (had they been one, they
            # would be one profile): cells stacked in a dense tissue, where one ends and its
            # neighbours start over it, are not joined.
            for k in (z - 1, z):
                if k not in touching:
                    touching[k] = _touching(stack[k], tables[k]["label"])
            touch_prev, touch_next = touching.pop(z - 1), touching[z]
            for r, c in np.argwhere(strong & ~went_on):
                branch = any(strong[r, c0] and not touch_next[c0, c] for c0 in np.flatnonzero(went_on[r]))
                join = any(strong[r0, c] and not touch_prev[r0, r] for r0 in np.flatnonzero(went_on[:, c]))
                if branch or join:
                    _union(parent, int(track_of[z - 1][r]), int(assigned[c]), anchor_ids)
            if p.gap_links:
                # a gap: the track of a profile of z - 1 went on into no profile of z, and a profile of
                # z starting a track lies mostly over it (or it mostly under that one): an object whose
                # profile changed too much for the gate (it grows at its end, two branches join). One
                # object unless either side's strong partners touch one another (cells stacked in a
                # dense tissue: one ends, its neighbours start over it).
                ended = ~np.isin(track_of[z - 1], assigned) & (tables[z - 1]["area"] >= p.min_area)
                for r, c in np.argwhere(strong & ended[:, None] & started[None, :]):
                    partners_next = np.flatnonzero(strong[r] & started)
                    partners_prev = np.flatnonzero(strong[:, c] & ended)
                    if not (touch_next[np.ix_(partners_next, partners_next)].any() or touch_prev[np.ix_(partners_prev, partners_prev)].any()):
                        _union(parent, int(track_of[z - 1][r]), int(assigned[c]), anchor_ids)
        track_of.append(assigned)
        crumbs_of.append(np.flatnonzero(table["area"] < p.min_area))  # an anchored crumb is linked, and joins its chain of crumbs too
        for c, t in enumerate(assigned):
            if not crumb[c]:
                last_seen[int(t)] = (z, c)
            cy, cx = table["centroid"][c]
            tracks.append({"id": int(t), "section": z, "centroid_y": float(cy), "centroid_x": float(cx), "area": int(table["area"][c]),
                           "link_cost": costs_in[c], "profile": int(labels[c])})  # fmt: skip
    _join_crumbs(stack, tables, track_of, crumbs_of, p.min_area, parent, anchor_ids)
    # final ids: the root of each joined group; anchored ids kept, the others numbered in order of appearance
    final: dict[int, int] = {}
    counter = max(anchor_ids, default=0)
    for row in tracks:
        root = _find(parent, row["id"])
        if root not in final:
            if root in anchor_ids:
                final[root] = root
            else:
                counter += 1
                final[root] = counter
        row["id"] = final[root]
    for z, (table, assigned) in enumerate(zip(tables, track_of)):
        ids[z] = _map_labels(stack[z], table["label"], np.array([final[_find(parent, int(t))] for t in assigned], np.uint32))
    return ids, tracks


def stitch_greedy(profiles: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Cellpose's 3D stitching of 2D masks: each profile takes the id of the previous section's
    profile it overlaps with the highest IoU when that IoU exceeds ``threshold`` (and no other
    profile of its section overlaps that one better), else a new id.

    Example:
        >>> s = np.zeros((2, 4, 4), np.int32); s[0, :2, :2] = 5; s[1, :2, :3] = 1; s[1, 3, 3] = 2
        >>> stitch_greedy(s)[1].tolist()[0], int(stitch_greedy(s)[1, 3, 3])
        ([1, 1, 1, 0], 2)
    """
    stack = _check_stack(profiles)
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be an IoU in [0, 1], got {threshold}")
    out = np.zeros(stack.shape, np.uint32)
    next_id = 1
    prev_labels = np.zeros(0, np.int64)
    for z in range(stack.shape[0]):
        labels, area = np.unique(stack[z][stack[z] > 0], return_counts=True)
        new = np.zeros(len(labels), np.uint32)
        if z > 0 and len(labels) and len(prev_labels):
            prev_ids, prev_area = np.unique(out[z - 1][out[z - 1] > 0], return_counts=True)
            overlap = _overlaps(out[z - 1].astype(np.int64), stack[z], prev_ids, labels)  # (prev, next)
            iou = overlap / (prev_area[:, None] + area[None, :] - overlap)
            iou[iou < threshold] = 0.0
            iou[iou < iou.max(axis=1, keepdims=True)] = 0.0  # each previous id to its best profile only
            best = iou.argmax(axis=0)
            hit = iou.max(axis=0) > 0
            new[hit] = prev_ids[best[hit]]
        for c in np.flatnonzero(new == 0):
            new[c] = next_id
            next_id += 1
        next_id = max(next_id, int(new.max(initial=0)) + 1)
        out[z] = _map_labels(stack[z], labels, new)
        prev_labels = labels
    return out


def section_profiles(
    prob: np.ndarray,
    threshold: float = 0.5,
    spacing: Sequence[float] | None = None,
    smooth_um: float | None = None,
    erode_um: float = 0.0,
    split_depth_um: float | None = None,
    min_area_um2: float = 0.0,
    dilate_um: float = 0.0,
) -> np.ndarray:
    """Profiles of one section from the probability that a pixel lies inside an object.

    Args:
        prob: ``(Y, X)`` probability of object interior, in [0, 1].
        threshold: interior above it.
        spacing: pixel size ``(Y, X)`` (units of the other lengths; default 1 = pixels).
        smooth_um: spatial sigma of the bilateral filter (edge-preserving smoothing) before the
            threshold; None or 0: none.
        erode_um: erosion radius that separates touching profiles before seeding (then the
            watershed grows the seeds back over the whole thresholded mask).
        split_depth_um: a profile is split where its distance transform has several maxima
            deeper than this (h-maxima); default: one pixel.
        min_area_um2: smaller profiles are dropped.
        dilate_um: grow every profile by this much into the background (never into another
            profile): a network trained on the objects' interior less their border (the axon
            bundle's target) gives profiles one border thinner than the objects.

    Returns:
        ``int32`` labels 1..N.

    Example:
        >>> p = np.zeros((20, 30)); p[4:16, 3:13] = 0.9; p[4:16, 14:26] = 0.9; p[9:11, 13:14] = 0.9  # two touching
        >>> int(section_profiles(p, erode_um=2.0).max())
        2
    """
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2:
        raise ValueError(f"prob must be one (Y, X) section, got shape {prob.shape}")
    if not np.all(np.isfinite(prob)):
        raise ValueError("prob holds NaN or infinite values")
    sy, sx = _spacing(spacing)
    px = float(np.sqrt(sy * sx))
    if smooth_um:
        prob = denoise_bilateral(np.clip(prob, 0.0, 1.0), sigma_color=0.1, sigma_spatial=float(smooth_um) / px)
    mask = prob > threshold
    radius = int(round(float(erode_um) / px))
    core = ndimage.binary_erosion(mask, disk(radius)) if radius > 0 else mask
    distance = ndimage.distance_transform_edt(core, sampling=(sy, sx))
    depth = px if split_depth_um is None else float(split_depth_um)
    seeds, n = ndimage.label(h_maxima(distance, depth) & core) if core.any() else (np.zeros(mask.shape, np.int32), 0)
    pieces, n_pieces = ndimage.label(mask)
    if n_pieces:  # a profile thinner than the erosion has no seed: it is its own one
        seeded = np.zeros(n_pieces + 1, bool)
        seeded[np.unique(pieces[seeds > 0])] = True
        unseeded = ~seeded[pieces] & (pieces > 0)
        seeds[unseeded] = n + pieces[unseeded]
    labels = watershed(-ndimage.distance_transform_edt(mask, sampling=(sy, sx)), seeds, mask=mask)
    if min_area_um2 > 0 and labels.max():
        area = np.bincount(labels.reshape(-1)) * sy * sx
        small = np.flatnonzero(area < min_area_um2)
        labels[np.isin(labels, small[small > 0])] = 0
    grow = int(round(float(dilate_um) / px))
    if grow > 0 and labels.max():
        labels = expand_labels(labels, distance=grow)
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    present = np.unique(labels[labels > 0])
    lut[present] = np.arange(1, len(present) + 1)
    return lut[labels]


def write_tracks(path: str | os.PathLike, tracks: Sequence[Mapping[str, Any]]) -> Path:
    """Write a tracks table (:data:`TRACK_FIELDS`) as CSV, atomically.

    Example:
        >>> import tempfile
        >>> p = write_tracks(tempfile.mkdtemp() + "/t.csv", [{"id": 1, "section": 0, "centroid_y": 2.0, "centroid_x": 3.0,
        ...                  "area": 9, "link_cost": None, "profile": 4}])
        >>> p.read_text().splitlines()[1]
        '1,0,2.0,3.0,9,,4'
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(TRACK_FIELDS))
            writer.writeheader()
            for row in tracks:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in TRACK_FIELDS})
    return path
