"""The models a GUI can run: installed bundles with 3D inputs and shipped weights.

A *model* is one inference configuration of a bundle: ``configs/inference.json`` alone, or
``inference.json`` with one ``inference_<variant>.json`` override on top (the model-zoo way of
shipping several weights in one bundle). It is offered when the bundle's ``metadata.json``
declares a 3D input (``network_data_format.inputs.image.spatial_shape`` has 3 entries) and the
configuration's ``ckpt_path`` exists. Nothing here imports gradio.

Example:
    >>> from cseg_monai.apps.models import find_models
    >>> [m.name for m in find_models()]  # doctest: +SKIP
    ['cell_instance_boundary_segmentation_3d: nuclei', 'cell_instance_boundary_segmentation_3d: cells']
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from monai.bundle import ConfigParser

from cseg_monai.postprocessing import InstanceParams
from cseg_monai.workflows import bundles_dir

__all__ = ["GuiModel", "find_models", "PARAMETER_KEYS"]

# GUI parameter -> config key it overrides (passed only where the model's config defines it);
# the post-processing settings are the model's ``instance_params`` (GuiModel.instance_params)
PARAMETER_KEYS = {
    "patch_size": "patch_size",
    "overlap": "overlap",
    "blend_mode": "blend_mode",
    "spacing": "spacing",
    "object_diameter": "object_diameter",
    "object_size": "object_size",  # read only: whether the model measures objects (object_diameter needs it)
}


@dataclass(frozen=True)
class GuiModel:
    """One runnable inference configuration of an installed bundle.

    Attributes:
        name: shown in the GUI, ``"<bundle>: <variant>"``. The variant is the configuration's
            entry in ``metadata.json``'s ``model_variants`` (``{"inference.json": "nuclei"}``),
            else the override file's name (``inference_cells.json`` -> ``cells``), else
            ``default``.
        bundle_dir: the bundle's root folder.
        configs: config file names under ``configs/``, merged in order.
        ckpt_path: the weights the configuration loads.
        in_channels: input channels the network takes.
        defaults: the configuration's values of the keys in :data:`PARAMETER_KEYS`.
        downsampling: per spatial axis, the factor a patch size must be a multiple of.
        overrides: config overrides applied to every run (e.g. another ``ckpt_path``); a model
            made by hand can carry its own weights this way.
        instance_params: the configuration's post-processing settings (its ``instance_params``),
            None for a model without instance post-processing.
        single_plane_2d: the configuration takes a 2D image as a volume of one plane (its
            ``single_plane_2d``), so the GUI accepts 2D uploads for it.
    """

    name: str
    bundle_dir: Path
    configs: tuple[str, ...]
    ckpt_path: Path
    in_channels: int
    defaults: dict = field(default_factory=dict)
    downsampling: tuple[int, int, int] = (1, 1, 1)
    overrides: dict = field(default_factory=dict)
    instance_params: InstanceParams | None = None
    single_plane_2d: bool = False

    @property
    def config_paths(self) -> list[str]:
        """Absolute paths of :attr:`configs`."""
        return [str(self.bundle_dir / "configs" / name) for name in self.configs]


def _variant_names(meta: dict) -> dict:
    return dict(meta.get("model_variants", {}))


def _load_model(bundle_dir: Path, configs: tuple[str, ...], meta: dict) -> GuiModel | None:
    parser = ConfigParser()
    parser.read_config([str(bundle_dir / "configs" / c) for c in configs])
    parser["bundle_root"] = str(bundle_dir)
    try:
        ckpt = Path(parser.get_parsed_content("ckpt_path"))
    except Exception:  # a configuration without a plain ckpt_path is not offered
        return None
    if not ckpt.is_file():
        return None
    defaults = {}
    for key in PARAMETER_KEYS.values():
        if key in parser.get():
            defaults[key] = parser.get_parsed_content(key)
    params = parser.get_parsed_content("instance_params") if "instance_params" in parser.get() else None
    if isinstance(params, dict):  # written without a _target_: the same settings, checked the same way
        params = InstanceParams.from_dict(params)
    elif params is not None and not isinstance(params, InstanceParams):
        raise ValueError(f"{bundle_dir.name} {list(configs)}: instance_params must be InstanceParams settings, got {type(params).__name__}")
    in_channels = int(parser.get_parsed_content("in_channels")) if "in_channels" in parser.get() else 1
    down = (1, 1, 1)
    if "pool" in parser.get() and "levels" in parser.get():
        pool = parser.get_parsed_content("pool")
        pool = [pool] * 3 if isinstance(pool, int) else list(pool)
        levels = int(parser.get_parsed_content("levels"))
        down = tuple(int(math.pow(int(p), levels - 1)) for p in pool)
    single_plane = bool(parser.get_parsed_content("single_plane_2d")) if "single_plane_2d" in parser.get() else False
    variants = _variant_names(meta)
    key = configs[-1]
    variant = variants.get(key) or (Path(key).stem.removeprefix("inference_") if len(configs) > 1 else "default")
    return GuiModel(
        name=f"{bundle_dir.name}: {variant}",
        bundle_dir=bundle_dir,
        configs=configs,
        ckpt_path=ckpt,
        in_channels=in_channels,
        defaults=defaults,
        downsampling=down,  # type: ignore[arg-type]
        instance_params=params,
        single_plane_2d=single_plane,
    )


def find_models(bundles_root: str | Path | None = None) -> list[GuiModel]:
    """Every 3D-input inference configuration with shipped weights under ``bundles_root``.

    Args:
        bundles_root: folder of bundles; default :func:`cseg_monai.workflows.bundles_dir`.

    Returns:
        The models, bundle by bundle (sorted), the base configuration first.

    Example:
        >>> models = find_models()
        >>> all(m.ckpt_path.is_file() for m in models)
        True
    """
    root = Path(bundles_root) if bundles_root is not None else bundles_dir()
    found: list[GuiModel] = []
    if not root.is_dir():
        return found
    for bundle in sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file()):
        configs_dir = bundle / "configs"
        if not (configs_dir / "inference.json").is_file():
            continue
        meta = json.loads((configs_dir / "metadata.json").read_text())
        image = meta.get("network_data_format", {}).get("inputs", {}).get("image", {})
        if len(image.get("spatial_shape", [])) != 3:
            continue
        candidates = [("inference.json",)] + [
            ("inference.json", p.name) for p in sorted(configs_dir.glob("inference_*.json"))
        ]
        for configs in candidates:
            model = _load_model(bundle, configs, meta)
            if model is not None:
                found.append(model)
    return found
