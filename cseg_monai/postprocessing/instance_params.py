"""The parameters of the instance post-processing: :class:`InstanceParams`, validated once.

One frozen dataclass names every setting of :func:`~cseg_monai.postprocessing.instances.segment_instances`
(watershed, graph partition, object filters) and of the foreground threshold that
:class:`~cseg_monai.postprocessing.BoundaryToInstancesd` applies before it, with its default and
its valid range. The bundle configs build one (``"instance_params": {"_target_":
"cseg_monai.postprocessing.InstanceParams", ...}``, overridden per data set as
``"instance_params#sigma_seeds": 4.0``), the transform and the function take it, and the GUI
reads its defaults and checks a user's settings through it, so a bad value is refused with
the same message wherever it comes from.

Example:
    >>> p = InstanceParams(method="agglomeration", min_size=50)
    >>> p.replace(mask_watershed=True).to_dict()["mask_watershed"]
    True
    >>> InstanceParams(threshold=1.5)
    Traceback (most recent call last):
    ...
    ValueError: InstanceParams.threshold must be a number in (0, 1), got 1.5
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["METHODS", "InstanceParams", "check_filter_limits"]

#: Graph partitions of :func:`~cseg_monai.postprocessing.instances.segment_instances`.
METHODS = ("multicut", "agglomeration", "watershed")


def _number(value: Any) -> bool:
    """Whether ``value`` is a real, finite number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def check_filter_limits(
    min_size: Any = 0, max_size: Any = None, min_major_axis: Any = 0.0, max_major_axis: Any = None
) -> None:
    """Raise ``ValueError`` unless the object-filter limits are numbers with ``0 <= min <= max``
    (a max of None: no limit).

    Example:
        >>> check_filter_limits(min_size=100, max_size=10)
        Traceback (most recent call last):
        ...
        ValueError: max_size (10) must be >= min_size (100), or None for no limit
    """
    for name, lo, hi in (("size", min_size, max_size), ("major_axis", min_major_axis, max_major_axis)):
        for which, value in (("min", lo), ("max", hi)):
            if (value is not None or which == "min") and (not _number(value) or value < 0):
                raise ValueError(f"{which}_{name} must be a number >= 0, got {value!r}")
        if hi is not None and hi < lo:
            raise ValueError(f"max_{name} ({hi!r}) must be >= min_{name} ({lo!r}), or None for no limit")


@dataclasses.dataclass(frozen=True)
class InstanceParams:
    """Settings of the boundary -> instances post-processing.

    Args:
        method: graph partition, one of :data:`METHODS`: ``"multicut"`` (GAEC + Kernighan-Lin),
            ``"agglomeration"`` (mean-boundary merging) or ``"watershed"`` (the supervoxels).
        threshold: boundary probability above which a voxel is boundary for the watershed's
            distance transform, in (0, 1).
        sigma_seeds: smoothing (voxels) of the distance map before its maxima become seeds,
            >= 0; larger merges more seeds (larger objects).
        min_supervoxel_size: supervoxels with fewer voxels merge into a neighbour, >= 0.
        beta: boundary bias of the multicut costs in (0, 1); > 0.5 cuts more.
        agglomeration_threshold: the agglomeration stops at this mean boundary probability, in [0, 1].
        foreground_threshold: foreground probability at or above which a voxel is foreground, in (0, 1).
        mask_watershed: flood the watershed only inside the foreground (sparse objects such as
            nuclei; off for densely packed cells).
        min_size, max_size: objects with fewer / more voxels are removed (``max_size`` None: no limit).
        min_major_axis, max_major_axis: objects whose major axis is shorter / longer are removed,
            in the units of the voxel size (``max_major_axis`` None: no limit).
        edge_min_fraction: objects cut by the Y or X edge of the image that have fewer voxels
            than this fraction of the median object not touching those edges are removed, in
            [0, 1); 0 keeps them all. Slivers of objects that lie mostly outside the field of
            view, which references such as the Cell Tracking Challenge's leave unlabelled.

    Example:
        >>> InstanceParams().method
        'multicut'
        >>> InstanceParams(min_size=100, max_size=10)
        Traceback (most recent call last):
        ...
        ValueError: InstanceParams: max_size (10) must be >= min_size (100), or None for no limit
    """

    method: str = "multicut"
    threshold: float = 0.5
    sigma_seeds: float = 2.0
    min_supervoxel_size: int = 50
    beta: float = 0.5
    agglomeration_threshold: float = 0.5
    foreground_threshold: float = 0.5
    mask_watershed: bool = False
    min_size: int = 0
    max_size: int | None = None
    min_major_axis: float = 0.0
    max_major_axis: float | None = None
    edge_min_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"InstanceParams.method must be one of {list(METHODS)}, got {self.method!r}")
        for name in ("threshold", "beta", "foreground_threshold"):
            value = getattr(self, name)
            if not _number(value) or not 0.0 < value < 1.0:
                raise ValueError(f"InstanceParams.{name} must be a number in (0, 1), got {value!r}")
        value = self.agglomeration_threshold
        if not _number(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"InstanceParams.agglomeration_threshold must be a number in [0, 1], got {value!r}")
        if not _number(self.edge_min_fraction) or not 0.0 <= self.edge_min_fraction < 1.0:
            raise ValueError(f"InstanceParams.edge_min_fraction must be a number in [0, 1), got {self.edge_min_fraction!r}")
        if not _number(self.sigma_seeds) or self.sigma_seeds < 0:
            raise ValueError(f"InstanceParams.sigma_seeds must be a number >= 0, got {self.sigma_seeds!r}")
        if self.max_size is not None and _number(self.max_size) and self.max_size == 0:
            raise ValueError("InstanceParams.max_size must be > 0 (it would remove every object), or None for no limit")
        for name in ("min_supervoxel_size", "min_size", "max_size"):
            value = getattr(self, name)
            if value is None and name == "max_size":
                continue
            if not _number(value) or value < 0 or float(value) != int(value):
                raise ValueError(f"InstanceParams.{name} must be a whole number >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.mask_watershed, (bool, np.bool_)):
            raise ValueError(f"InstanceParams.mask_watershed must be true or false, got {self.mask_watershed!r}")
        object.__setattr__(self, "mask_watershed", bool(self.mask_watershed))
        try:
            check_filter_limits(self.min_size, self.max_size, self.min_major_axis, self.max_major_axis)
        except ValueError as err:
            raise ValueError(f"InstanceParams: {err}") from None
        for name in ("threshold", "sigma_seeds", "beta", "agglomeration_threshold", "foreground_threshold", "min_major_axis", "max_major_axis",
                     "edge_min_fraction"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))  # plain floats (JSON, MLflow), also from numpy or int

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The parameter names, in declaration order.

        Example:
            >>> InstanceParams.fields()[:3]
            ('method', 'threshold', 'sigma_seeds')
        """
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InstanceParams:
        """Build from a mapping (a config section, a GUI form), rejecting unknown keys by name.

        Example:
            >>> InstanceParams.from_dict({"sigma_seed": 4.0})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: unknown instance parameter(s) ['sigma_seed']; known: ['agglomeration_threshold', ...]
        """
        known = set(cls.fields())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown instance parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    @classmethod
    def check_names(cls, names: Any, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` for any name in ``names`` that is no field.

        Example:
            >>> InstanceParams.check_names(["min_size", "foreground_chanel"], "BoundaryToInstancesd")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: BoundaryToInstancesd: unknown argument(s) ['foreground_chanel'] (neither its own nor an InstanceParams field: ...)
        """
        unknown = sorted(set(names) - set(cls.fields()))
        if unknown:
            raise ValueError(f"{where}: unknown argument(s) {unknown} (neither its own nor an InstanceParams field: {sorted(cls.fields())})")

    def replace(self, **changes: Any) -> InstanceParams:
        """A copy with ``changes`` applied (validated again; unknown names refused).

        Example:
            >>> InstanceParams().replace(sigma_seeds=4.0).sigma_seeds
            4.0
        """
        return InstanceParams.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the inverse of :meth:`from_dict`).

        Example:
            >>> InstanceParams().to_dict()["max_size"] is None
            True
        """
        return dataclasses.asdict(self)
