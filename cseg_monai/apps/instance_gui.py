"""The web GUI for 3D instance segmentation (``cseg gui``): a Gradio app on 127.0.0.1.

Upload one or more volumes (TIFF, HDF5 with a dataset name, NIfTI; 1-2 channels), choose a
model (every installed bundle with 3D inputs and shipped weights, see
:func:`cseg_monai.apps.models.find_models`) and the parameters (patch size, overlap, blending,
boundary threshold, instance method, min/max object size), run with a progress bar, browse
z-slices with the instances overlaid, and download ``STEM_labels.tif`` and ``STEM_prob.tif``.
Uploads are checked (size, dimensions, dtype, values) with messages that name the file; a
volume that fails is reported and the app goes on. Outputs stay in
``OUTPUT_DIR/job-*/outputs``. The app has no log-in: it listens on 127.0.0.1 unless told
otherwise.

Example:
    >>> from cseg_monai.apps.instance_gui import build_app
    >>> app = build_app(output_dir="/tmp/cseg_gui")  # doctest: +SKIP
    >>> app.launch(server_name="127.0.0.1", server_port=7860)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cseg_monai.apps.jobs import BLEND_MODES, JobParams, run_job
from cseg_monai.apps.models import GuiModel, find_models
from cseg_monai.apps.volumes import VOLUME_SUFFIXES, UploadLimits
from cseg_monai.postprocessing import METHODS, InstanceParams
from cseg_monai.visualisation import instance_slice_picture

__all__ = ["build_app", "launch", "render_slice", "parse_patch_size"]


def parse_patch_size(text: str) -> tuple[int, int, int]:
    """``"32, 64, 64"`` -> ``(32, 64, 64)``; a clear ``ValueError`` otherwise.

    Example:
        >>> parse_patch_size("16 x 64 x 64")
        (16, 64, 64)
    """
    parts = [p for p in str(text).replace("x", ",").replace(" ", ",").split(",") if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"patch size {text!r}: expected three whole numbers z, y, x such as 32, 64, 64") from None
    if len(sizes) != 3:
        raise ValueError(f"patch size {text!r}: expected three numbers z, y, x, got {len(sizes)}")
    return sizes  # type: ignore[return-value]


@functools.lru_cache(maxsize=6)
def _load(path: str) -> np.ndarray:
    array = tifffile.imread(path)
    return array[None] if array.ndim == 2 else array  # a 2D upload and its labels: one plane


@functools.lru_cache(maxsize=6)
def _grey_range(path: str) -> tuple[float, float]:
    image = _first_channel(_load(path))
    lo, hi = np.percentile(image, (0.5, 99.5))
    return float(lo), float(max(hi, lo + 1e-6))


def _first_channel(image: np.ndarray) -> np.ndarray:
    return image[:, 0] if image.ndim == 4 else image  # job inputs: (Z, Y, X), or ImageJ (Z, C, Y, X)


def render_slice(image_path: str, labels_path: str, prob_path: str | None, z: int, min_height: int = 360) -> np.ndarray:
    """RGB picture of plane ``z``: ``image | instances over the image | boundary probability``.

    Instances get a colour each (a fixed table, so a cell keeps its colour from plane to
    plane) and a white outline. Small volumes are enlarged (nearest) to ``min_height`` rows.

    Example:
        >>> import numpy as np, tempfile, tifffile, os
        >>> d = tempfile.mkdtemp(); img, lab = os.path.join(d, "i.tif"), os.path.join(d, "l.tif")
        >>> tifffile.imwrite(img, np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8))
        >>> tifffile.imwrite(lab, np.ones((2, 8, 8), np.uint32))
        >>> render_slice(img, lab, None, 1, min_height=16).shape
        (16, 36, 3)
    """
    volume = _first_channel(_load(image_path))
    labels = _load(labels_path)
    z = int(np.clip(z, 0, volume.shape[0] - 1))
    boundary = None
    if prob_path is not None:
        prob = _load(prob_path)
        boundary = prob[0, z] if prob.ndim == 4 else prob[z]
    return instance_slice_picture(volume[z], labels[z], boundary, _grey_range(image_path), min_height)


def _model_defaults(model: GuiModel) -> dict:
    d = model.defaults
    patch = d.get("patch_size")
    p = model.instance_params or InstanceParams()
    return {
        "patch": ", ".join(str(p) for p in patch) if patch else "",
        "overlap": float(d.get("overlap", 0.5)),
        "blend": d.get("blend_mode", "gaussian"),
        "threshold": p.threshold,
        "method": p.method,
        "min_size": p.min_size,
        "max_size": p.max_size or 0,
        "masked": p.mask_watershed,
    }


def build_app(
    output_dir: str | os.PathLike = "cseg_gui_outputs",
    limits: UploadLimits | None = None,
    models: list[GuiModel] | None = None,
) -> Any:
    """The Gradio ``Blocks`` app (not launched).

    Args:
        output_dir: folder that receives one ``job-*`` folder per run.
        limits: upload limits (size, voxels, channels).
        models: the models to offer; default :func:`find_models`.

    Returns:
        ``gradio.Blocks``.

    Raises:
        RuntimeError: no model with shipped weights is installed.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr  # heavy optional extra "gui": imported only when the app is built


    limits = limits or UploadLimits()
    models = find_models() if models is None else models
    if not models:
        raise RuntimeError("no installed bundle with 3D inputs ships weights; nothing to run")
    by_name = {m.name: m for m in models}
    output_dir = Path(output_dir).resolve()
    first = _model_defaults(models[0])

    def on_model(name: str):
        d = _model_defaults(by_name[name])
        return d["patch"], d["overlap"], d["blend"], d["threshold"], d["method"], d["min_size"], d["max_size"], d["masked"]

    def on_run(
        files, dataset, channel, diameter, name, patch, overlap, blend, threshold, method, min_size, max_size, masked,
        progress=gr.Progress(track_tqdm=True),  # the bundle's sliding-window bar moves within one volume
    ):  # fmt: skip
        if not files:
            raise gr.Error("Upload at least one volume first.")
        if name not in by_name:
            raise gr.Error(f"Unknown model {name!r}; choose one of the list.")
        try:
            params = JobParams(
                patch_size=parse_patch_size(patch) if str(patch).strip() else None,
                overlap=float(overlap),
                blend_mode=blend,
                boundary_threshold=float(threshold),
                instance_method=method,
                min_size=int(min_size or 0),
                max_size=int(max_size or 0),
                mask_watershed=bool(masked),
                dataset=(dataset or "").strip() or None,
                channel=None if channel in (None, "") or float(channel) < 0 else int(channel),
                object_diameter=None if diameter in (None, "") or float(diameter) <= 0 else float(diameter),
            )
            params.check(by_name[name])
        except ValueError as err:
            raise gr.Error(str(err)) from None
        paths = [f if isinstance(f, str) else f.name for f in files]
        progress(0.0, desc="starting")
        try:
            result = run_job(
                paths, by_name[name], params, output_dir, limits=limits,
                progress=lambda fraction, text: progress(fraction, desc=text), tqdm_bars=True,
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - the app must survive any job
            raise gr.Error(f"The job failed: {err}") from None
        done = [
            {"name": v.stem, "image": str(v.input_path), "labels": str(v.labels_path),
             "prob": str(v.prob_path) if v.prob_path else None, "depth": int(_load(str(v.labels_path)).shape[0])}
            for v in result.succeeded
        ]  # fmt: skip
        choices = [d["name"] for d in done]  # output stems: unique within a job, as the file names
        if done:
            depth = done[0]["depth"]
            view = render_slice(done[0]["image"], done[0]["labels"], done[0]["prob"], depth // 2)
            slider = gr.Slider(minimum=0, maximum=max(depth - 1, 1), value=depth // 2, step=1, interactive=True)
        else:
            view, slider = None, gr.Slider(minimum=0, maximum=1, value=0, step=1)
        volume = gr.Dropdown(choices=choices, value=choices[0] if choices else None)
        return result.summary(), result.files or None, volume, slider, view, done

    def on_volume(vol_name, done):
        item = next((d for d in done or [] if d["name"] == vol_name), None)
        if item is None:
            return gr.Slider(), None
        z = item["depth"] // 2
        slider = gr.Slider(minimum=0, maximum=max(item["depth"] - 1, 1), value=z, step=1)
        return slider, render_slice(item["image"], item["labels"], item["prob"], z)

    def on_slice(vol_name, z, done):
        item = next((d for d in done or [] if d["name"] == vol_name), None)
        if item is None:
            return None
        return render_slice(item["image"], item["labels"], item["prob"], int(z))

    with gr.Blocks(title="cseg-monai: 3D instance segmentation", analytics_enabled=False) as app:
        gr.Markdown(
            "## cseg-monai: 3D cell and nucleus instance segmentation\n"
            "Upload volumes, choose a model and its parameters, **Run**, then browse the z-slices "
            f"and download the label (`*_labels.tif`, uint32 ids) and probability (`*_prob.tif`) files. "
            f"Limits: {limits.max_megabytes:g} MB and {limits.max_voxels:,} voxels per volume, "
            f"1-{limits.max_channels} channels."
        )
        done_state = gr.State([])
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                files = gr.File(
                    label="Volumes: TIFF, HDF5, NIfTI, NRRD, MHA, MRC (Z, Y, X) or (C, Z, Y, X)",
                    file_count="multiple",
                    file_types=list(VOLUME_SUFFIXES),
                    elem_id="volumes",
                )
                dataset = gr.Textbox(label="HDF5 dataset (empty: the file's only array)", placeholder="raw")
                channel = gr.Number(
                    value=-1, precision=0, minimum=-1, elem_id="channel",
                    label="Channel to segment, for uploads with more channels than the model takes (-1: none)",
                )  # fmt: skip
                diameter = gr.Number(
                    value=0, minimum=0, elem_id="diameter",
                    label="Object diameter, pixels (0: measured in the image; models that rescale by object size)",
                )  # fmt: skip
                model = gr.Dropdown(choices=list(by_name), value=models[0].name, label="Model", elem_id="model")
                with gr.Accordion("Parameters", open=True):
                    patch = gr.Textbox(value=first["patch"], label="Patch size z, y, x", elem_id="patch")
                    overlap = gr.Slider(0.0, 0.9, value=first["overlap"], step=0.05, label="Overlap")
                    blend = gr.Radio(list(BLEND_MODES), value=first["blend"], label="Blending")
                    threshold = gr.Slider(0.05, 0.95, value=first["threshold"], step=0.05, label="Boundary threshold")
                    method = gr.Radio(list(METHODS), value=first["method"], label="Instances by")
                    min_size = gr.Number(value=first["min_size"], precision=0, minimum=0, label="Min object size (voxels)")
                    max_size = gr.Number(value=first["max_size"], precision=0, minimum=0, label="Max object size (voxels, 0: none)")
                    masked = gr.Checkbox(
                        value=first["masked"], label="Watershed inside the foreground only (sparse objects, e.g. nuclei)",
                        elem_id="masked",
                    )  # fmt: skip
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown("Nothing run yet.", elem_id="status")
                volume = gr.Dropdown(choices=[], label="Volume", elem_id="volume")
                z = gr.Slider(0, 1, value=0, step=1, label="z-slice", elem_id="zslice")
                view = gr.Image(label="image | instances | boundary probability", type="numpy", interactive=False, elem_id="view")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        model.change(on_model, inputs=model, outputs=[patch, overlap, blend, threshold, method, min_size, max_size, masked])
        run.click(
            on_run,
            inputs=[files, dataset, channel, diameter, model, patch, overlap, blend, threshold, method, min_size, max_size, masked],
            outputs=[status, downloads, volume, z, view, done_state],
            concurrency_limit=1,
        )
        volume.input(on_volume, inputs=[volume, done_state], outputs=[z, view])
        z.input(on_slice, inputs=[volume, z, done_state], outputs=view)
    app.queue(default_concurrency_limit=1)
    app.cseg_output_dir = output_dir  # type: ignore[attr-defined]
    app.cseg_limits = limits  # type: ignore[attr-defined]
    return app


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    output_dir: str | os.PathLike = "cseg_gui_outputs",
    max_upload_mb: float = 2048.0,
    max_voxels: int = 2**28,
    block: bool = True,
) -> Any:
    """Build and start the app; with ``block`` (the default) serve until interrupted.

    Args:
        host: interface to listen on; ``127.0.0.1`` (default) keeps it on this machine. The app
            has no log-in, so think twice before ``0.0.0.0``.
        port: TCP port.
        output_dir: folder for the job folders (created).
        max_upload_mb: largest upload, MB.
        max_voxels: largest volume, voxels.
        block: serve in the foreground.

    Returns:
        The launched ``gradio.Blocks``.
    """
    if max_upload_mb <= 0 or max_voxels <= 0:
        raise ValueError(f"max_upload_mb and max_voxels must be positive, got {max_upload_mb} and {max_voxels}")
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    app = build_app(out, UploadLimits(max_megabytes=max_upload_mb, max_voxels=int(max_voxels)))
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cseg gui: WARNING: listening on {host}; the app has no log-in, anyone who reaches the port can use it")
    app.launch(
        server_name=host,
        server_port=int(port),
        allowed_paths=[str(out)],
        max_file_size=f"{max_upload_mb:g}mb",
        share=False,
        inbrowser=False,
        show_error=True,
        prevent_thread_lock=not block,
        footer_links=[],
        ssr_mode=False,
    )
    return app
