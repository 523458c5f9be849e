"""The ``cseg`` command line (made with ``fire``): thin wrappers over the library and the bundles.

Examples::

    cseg phantom data/phantom                 # write a synthetic ISBI-style data set
    cseg bundles                              # list the bundles
    cseg train isbi2012_em_membrane_segmentation --dataset_dir data/phantom --max_epochs 5
    cseg infer isbi2012_em_membrane_segmentation data/phantom/test/image preds/
    cseg mlflow-ui bundles/isbi2012_em_membrane_segmentation/outputs
    cseg gui                                  # web GUI for 3D instances on http://127.0.0.1:7860
    cseg trace sections_labels.tif traced/    # link per-section 2D labels into 3D ids (+ --anchors seeds.csv)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import fire

from cseg_monai.apps.instance_gui import launch
from cseg_monai.common.errors import innermost_exception
from cseg_monai.data.datasets import isbi2012
from cseg_monai.data.phantom import write_organelle_dataset, write_phantom_dataset
from cseg_monai.postprocessing.section_tracking import LinkParams
from cseg_monai.workflows import bundles_dir, export_bundle, import_bundle, list_bundles, resolve_bundle, run_bundle
from cseg_monai.workflows.tracing import trace_files

__all__ = ["CLI", "main"]


class BundleCommands:
    """Share a bundle as one zip: ``cseg bundle export NAME OUT.zip``, ``cseg bundle import OUT.zip DIR``."""

    def export(self, name: str, out_zip: str, overwrite: bool = False) -> str:
        """Write a self-contained model-zoo zip of a bundle (configs, weights, models/model.ts, docs, LICENSE).

        Args:
            name: bundle name (see ``cseg bundles``) or folder.
            out_zip: the zip to write, or an existing folder (then ``FOLDER/NAME.zip``).
            overwrite: replace an existing zip.
        """
        return str(export_bundle(name, out_zip, overwrite=overwrite))

    def import_(self, zip_file: str, bundle_dir: str, overwrite: bool = False) -> str:
        """Unpack a bundle zip into ``BUNDLE_DIR/NAME`` (``cseg bundle import``; as ``monai.bundle download --bundle_dir``).

        Args:
            zip_file: the zip (one top-level folder named after the bundle).
            bundle_dir: the folder that receives the bundle folder.
            overwrite: replace an existing ``BUNDLE_DIR/NAME``.
        """
        path = import_bundle(zip_file, bundle_dir, overwrite=overwrite)
        return f"bundle unpacked to {path.resolve()}; run it with: cseg infer {path.resolve()} IMAGES OUT"


# fire finds a command by its member name, and `import` is a Python keyword: expose import_ as `import`
setattr(BundleCommands, "import", BundleCommands.import_)


class CLI:
    """cseg-monai: EM and light-microscopy segmentation bundles built on MONAI."""

    #: ``cseg bundle export NAME OUT.zip`` and ``cseg bundle import OUT.zip DIR``
    bundle = BundleCommands()

    def phantom(
        self,
        out_dir: str,
        n_train: int = 12,
        n_test: int = 2,
        size: int = 256,
        seed: int = 0,
        layout: str = "isbi",
        overwrite: bool = False,
    ) -> str:
        """Write a synthetic EM data set with exact labels (ISBI-style folders or 3D TIFF volumes).

        Args:
            out_dir: output folder.
            n_train: labelled slices (or planes of the volume).
            n_test: unlabelled test slices.
            size: height and width in pixels.
            seed: random seed (same seed, same data).
            layout: ``isbi`` (train/image, train/label, test/image PNGs), ``volume`` (TIFF stacks)
                or ``organelle`` (images/ and labels/ with the 6 organelle classes, the ``folder``
                layout of the organelle bundle; ``n_train`` slices, ``n_test`` ignored).
            overwrite: allow writing into a non-empty folder.
        """
        if layout == "organelle":
            target = Path(out_dir)
            if target.exists() and any(target.iterdir()) and not overwrite:
                raise ValueError(f"{target} exists and is not empty (pass --overwrite)")
            root = write_organelle_dataset(target, n_slices=n_train, shape=(size, size), seed=seed)
            return f"organelle phantom written to {Path(root).resolve()}: {n_train} slices of {size}x{size}"
        written = write_phantom_dataset(
            out_dir, n_train=n_train, n_test=n_test, size=size, seed=seed, layout=layout, overwrite=overwrite
        )
        summary = {k: v for k, v in written.items() if k not in ("files", "out_dir")}
        return f"phantom data set written to {Path(out_dir).resolve()}: " + json.dumps(summary, default=str)

    def trace(
        self,
        profiles: str,
        out_dir: str,
        anchors: str | None = None,
        method: str = "hungarian",
        max_skip: int = 1,
        max_cost: float = 1.6,
        branch_overlap: float = 0.5,
        min_area: int = 20,
    ) -> str:
        """Link per-section 2D label images into 3D ids: OUT_DIR/STEM_labels.tif and STEM_tracks.csv.

        Args:
            profiles: a (Z, Y, X) stack of per-section labels (ids need not agree between sections), or a folder of them.
            out_dir: output folder.
            anchors: CSV with columns section, y, x, id: seeds that fix identities.
            method: ``hungarian`` (linking by assignment, gaps, branches, anchors) or ``greedy`` (Cellpose's IoU stitching).
            max_skip: sections a track may jump (0 or 1).
            max_cost: the link gate (see ``LinkParams``).
            branch_overlap: overlap (of the smaller profile) that joins branches; 0 disables.
            min_area: profiles smaller than this (pixels) follow their neighbours instead of being linked.
        """
        params = LinkParams(max_skip=int(max_skip), max_cost=float(max_cost), branch_overlap=float(branch_overlap), min_area=int(min_area))
        summary = trace_files(profiles, out_dir, anchors=anchors, method=method, params=params, progress=sys.stderr.isatty())
        return json.dumps({"n_files": summary["n_files"], "succeeded": summary["succeeded"]}, indent=2)

    def bundles(self) -> str:
        """List the bundles with their version and task."""
        lines = []
        for name in list_bundles():
            meta = json.loads((bundles_dir() / name / "configs" / "metadata.json").read_text())
            lines.append(f"{name}  v{meta.get('version', '?')}  {meta.get('task', '')}")
        return "\n".join(lines) if lines else f"no bundles under {bundles_dir()}"

    def train(self, bundle: str, *overrides_files: str, **override: Any) -> None:
        """Train a bundle: ``train.json`` (+ extra override files in its configs/), then ``--key value`` overrides."""
        run_bundle(resolve_bundle(bundle), ["train.json", *overrides_files], "train", **override)

    def evaluate(self, bundle: str, *overrides_files: str, **override: Any) -> None:
        """Evaluate a bundle's weights on its validation split (``train.json`` + ``evaluate.json``)."""
        run_bundle(resolve_bundle(bundle), ["train.json", "evaluate.json", *overrides_files], "eval", **override)

    def infer(self, bundle: str, input: str, output: str, *overrides_files: str, large: bool = False, **override: Any) -> str:
        """Run a bundle's ``inference.json`` on a folder of images (or one image); write OUTPUT/STEM_prob.tif, STEM_labels.tif.

        With ``--large``, volumes larger than memory run out of core (``inference_large.json`` on top):
        each volume is read box by box and written block by block to ``OUTPUT/NAME.ome.zarr`` on a
        Dask cluster (``--scheduler tcp://host:port``, ``--n_workers``, ``--threads_per_worker``,
        ``--block_shape``, ``--overwrite``); an interrupted run restarted alike resumes.

        Args:
            bundle: bundle name (see ``cseg bundles``) or folder.
            input: a folder of images in any supported format, or one image file; with ``--large``
                a zarr / OME-Zarr store, an N5 container, an HDF5 or TIFF file, a folder of 2D slices, or a folder of volumes.
            output: output folder (created).
            overrides_files: extra config files of the bundle merged on top (e.g. ``swinunetr.json``).
            large: out-of-core inference into OME-Zarr (the bundle's ``inference_large.json``).
            override: any config id, e.g. ``--ckpt_path my.pt --device cpu``.
        """
        bundle_dir = resolve_bundle(bundle)
        src = Path(input)
        if not Path(str(input).split("::", 1)[0]).exists():
            raise FileNotFoundError(f"input {src} does not exist")
        if large:
            if not (bundle_dir / "configs" / "inference_large.json").is_file():
                raise ValueError(f"bundle {bundle_dir.name} has no configs/inference_large.json (no out-of-core inference yet)")
            override.setdefault("dataset_dir", str(input) if "::" in str(input) else str(src.resolve()))
            override.setdefault("output_dir", str(Path(output).resolve()))
            run_bundle(bundle_dir, ["inference.json", "inference_large.json", *overrides_files], "infer", **override)
            return f"OME-Zarr predictions written to {Path(output).resolve()}"
        if src.is_file():
            override.setdefault("datalist", [{"image": str(src.resolve())}])
        else:
            override.setdefault("dataset_dir", str(input) if "::" in str(input) else str(src.resolve()))
        override.setdefault("output_dir", str(Path(output).resolve()))
        run_bundle(bundle_dir, ["inference.json", *overrides_files], "infer", **override)
        return f"predictions written to {Path(output).resolve()}"

    def mlflow_ui(self, output_dir: str = ".", port: int = 5000, host: str = "127.0.0.1") -> None:
        """Open the MLflow UI on the runs of OUTPUT_DIR/mlruns.db (a training's output_dir).

        Equivalent to ``mlflow ui --backend-store-uri sqlite:///OUTPUT_DIR/mlruns.db --host 127.0.0.1``.
        """
        db = Path(output_dir)
        db = db if db.suffix == ".db" else db / "mlruns.db"
        if not db.is_file():
            raise FileNotFoundError(f"no MLflow store at {db}: pass the output_dir of a training run")
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
        cmd = [mlflow or "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db.resolve()}", "--host", host, "--port", str(port)]
        print(" ".join(cmd))
        print(f"open http://{host}:{port}")
        subprocess.run(cmd, check=False)

    def gui(
        self,
        host: str = "127.0.0.1",
        port: int = 7860,
        output_dir: str = "cseg_gui_outputs",
        max_upload_mb: float = 2048.0,
        max_voxels: int = 2**28,
    ) -> None:
        """Start the web GUI for 3D instance segmentation (Gradio; ``bash scripts/setup.sh gui``).

        Upload volumes, choose a model and parameters, run, browse z-slices with the instances
        overlaid, download the labels. Open http://HOST:PORT in a browser; Ctrl-C stops it.

        Args:
            host: interface to listen on; the default keeps the app on this machine (no log-in).
            port: TCP port.
            output_dir: folder that receives one ``job-*`` folder per run.
            max_upload_mb: largest upload accepted, MB.
            max_voxels: largest volume accepted, voxels.
        """
        if importlib.util.find_spec("gradio") is None:  # the optional extra "gui"
            raise ValueError("the GUI needs gradio: bash scripts/setup.sh gui")

        launch(host=host, port=port, output_dir=output_dir, max_upload_mb=max_upload_mb, max_voxels=max_voxels)

    def download(self, dataset: str, dest: str) -> str:
        """Download a public data set with its checksum checked (``isbi2012``)."""
        if dataset != "isbi2012":
            raise ValueError(f"unknown data set {dataset!r}; known: ['isbi2012']")
        return str(isbi2012.download(dest))


def main() -> None:
    """Entry point of the ``cseg`` console script."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        fire.Fire(CLI, name="cseg")
    except Exception as err:  # bad input: one clear line, no traceback (CSEG_DEBUG=1 shows it)
        cause = _user_error(err)
        if cause is None or os.environ.get("CSEG_DEBUG"):
            raise
        message = cause.args[0] if isinstance(cause, KeyError) and cause.args else cause
        print(f"cseg: error: {message}", file=sys.stderr)
        sys.exit(2)


def _user_error(err: BaseException) -> BaseException | None:
    """The innermost bad-input error (missing file, bad value, unknown key) behind ``err``.

    MONAI wraps errors raised inside configs and transforms in ``RuntimeError``; the cause
    chain holds the message that names the file and the problem.
    """
    return innermost_exception(err, (FileNotFoundError, ValueError, KeyError))


if __name__ == "__main__":
    main()
