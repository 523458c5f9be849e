"""Dense-CRF speed and memory: the native PyTorch backend vs pydensecrf on the same 3D problem.

The synthetic problem (deterministic, written once to a scratch folder as .npy files): 7 labels
from the argmax of a smooth random field (trilinear from a grid every 8 voxels); a uint8 image
with one mean grey value per label plus Gaussian noise (sd 25); probabilities
``softmax(2 * onehot(label) + 1.5 * N(0, 1))`` (about half the voxels are wrong before the CRF).
Model: 5 mean-field iterations, Potts, smoothness kernel (weight 3, sigma 3 voxels) and
appearance kernel (weight 5, sigma 10 voxels, intensity sigma 10); ``--sigmas small`` uses
1 / 3 / 3 instead (a harder case for the native bilateral grid, whose cells then outnumber
the voxels).

Every run is its own process that loads the problem and runs one backend, so its peak
resident memory (``*_peak_mb``: ``ru_maxrss``, which includes Python, torch and the loaded
float32 probabilities and uint8 image, ``inputs_loaded_mb``) is that run's alone, and
``*_extra_mb`` is the peak minus what the process held after loading the inputs; times cover the CRF call (features, lattice/grid set-up, the
iterations and the argmax), not the loading. ``label_agreement`` is the fraction of voxels
where both backends pick the same label; ``accuracy_*`` compares with the synthetic truth.

Each backend runs ``--repeats`` times per size (default 3, alternating pydensecrf and native so
that both meet the same load on a shared machine); times and peaks are the medians, the single
times are kept as ``*_runs_s``. Sizes: 64x128x128 and 128x256x256 with both backends, then
512x512x512 with the native backend alone (once, in blocks with a halo; ``--quick``: 32x64x64 and
64x128x128, no 512^3).

Usage::

    .venv/bin/python scripts/benchmarks/crf3d.py --json scripts/benchmarks/results/crf3d.json
    .venv/bin/python scripts/benchmarks/crf3d.py --quick --json /tmp/crf3d.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_LABELS = 7
SIGMAS = {"default": (3.0, 10.0, 10.0), "small": (1.0, 3.0, 3.0)}


def write_problem(folder: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """Write ``prob.npy`` (7 x Z x Y x X float32), ``image.npy`` (uint8) and ``truth.npy`` (uint8), slab by slab."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if any(s % 8 for s in shape):
        raise ValueError(f"sizes must be multiples of 8, got {shape}")
    folder.mkdir(parents=True, exist_ok=True)
    z, y, x = shape
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, N_LABELS, z // 8 + 1, y // 8 + 1, x // 8 + 1, generator=gen)
    prob = np.lib.format.open_memmap(folder / "prob.npy", mode="w+", dtype=np.float32, shape=(N_LABELS,) + shape)
    image = np.lib.format.open_memmap(folder / "image.npy", mode="w+", dtype=np.uint8, shape=shape)
    truth = np.lib.format.open_memmap(folder / "truth.npy", mode="w+", dtype=np.uint8, shape=shape)
    means = torch.linspace(20, 235, N_LABELS)
    for k in range(z // 8):  # one slab of 8 planes between coarse planes k and k + 1: exact global trilinear
        field = F.interpolate(coarse[:, :, k : k + 2], size=(9, y + 1, x + 1), mode="trilinear", align_corners=True)
        label = field[0, :, :8, :y, :x].argmax(0)
        slab_gen = torch.Generator().manual_seed(seed * 100_003 + k + 1)
        grey = (means[label] + 25 * torch.randn(label.shape, generator=slab_gen)).clamp(0, 255).round()
        logits = 2.0 * F.one_hot(label, N_LABELS).permute(3, 0, 1, 2).float()
        logits += 1.5 * torch.randn(logits.shape, generator=slab_gen)
        prob[:, 8 * k : 8 * k + 8] = torch.softmax(logits, 0).numpy()
        image[8 * k : 8 * k + 8] = grey.to(torch.uint8).numpy()
        truth[8 * k : 8 * k + 8] = label.to(torch.uint8).numpy()
    for arr in (prob, image, truth):
        arr.flush()


def worker(backend: str, folder: Path, sigmas: str, out: Path, threads: int) -> None:
    """One backend on one problem, in this process; writes seconds, peak MB and the labels."""
    import resource

    import numpy as np
    import torch

    from cseg_monai.postprocessing import CRFParams, DenseCRF

    torch.set_num_threads(threads)
    prob = np.load(folder / "prob.npy")
    image = np.load(folder / "image.npy")
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s_sigma, a_sigma, i_sigma = SIGMAS[sigmas]
    params = CRFParams(
        iterations=5, smoothness_weight=3.0, smoothness_sigma=s_sigma,
        appearance_weight=5.0, appearance_sigma=a_sigma, intensity_sigma=i_sigma,
    )  # fmt: skip
    crf = DenseCRF(params, backend=backend, device="cpu")
    start = time.perf_counter()
    labels = crf.labels(prob, image, name=str(folder))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out.with_suffix(".labels.npy"), labels)
    out.write_text(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "loaded_mb": loaded_mb}))


def machine_description() -> dict:
    """CPU model, core count and torch version: the speed ratio depends on the machine (vector units, memory)."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__}


def _median_run(runs: list[dict]) -> dict:
    """Per-key medians of several worker results (seconds, peak_mb, loaded_mb)."""
    import statistics

    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def run_worker(backend: str, folder: Path, sigmas: str, threads: int) -> dict:
    out = folder / f"{backend}.json"
    cmd = [sys.executable, __file__, "--worker", backend, str(folder), "--sigmas", sigmas, "--threads", str(threads)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="32x64x64 and 64x128x128, no 512^3")
    parser.add_argument("--sigmas", choices=sorted(SIGMAS), default="default")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the native backend")
    parser.add_argument("--skip_large", action="store_true", help="leave out the 512^3 native run")
    parser.add_argument(
        "--repeats", type=int, default=3,
        help="fresh-process runs per backend and size, alternating the backends; times and peaks are their medians",
    )  # fmt: skip
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        backend, folder = args.worker
        worker(backend, Path(folder), args.sigmas, Path(folder) / f"{backend}.json", args.threads)
        return 0
    if not args.json:
        parser.error("--json PATH is required")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    import numpy as np

    from cseg_monai.postprocessing import have_pydensecrf

    if not have_pydensecrf():
        print("pydensecrf is not installed: run `bash scripts/setup.sh crf` first", file=sys.stderr)
        return 2
    sizes = [(32, 64, 64), (64, 128, 128)] if args.quick else [(64, 128, 128), (128, 256, 256)]
    s_sigma, a_sigma, i_sigma = SIGMAS[args.sigmas]
    result: dict = {
        "problem": {
            "labels": N_LABELS, "iterations": 5, "compatibility": "potts",
            "smoothness": {"weight": 3.0, "sigma_vox": s_sigma},
            "appearance": {"weight": 5.0, "sigma_vox": a_sigma, "sigma_intensity": i_sigma},
        },
        "machine": machine_description(),
        "threads_native": args.threads,
        "threads_pydensecrf": 1,
        "repeats": args.repeats,
        "sizes": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="crf3d-") as scratch:
        for shape in sizes:
            name = "x".join(map(str, shape))
            folder = Path(scratch) / name
            write_problem(folder, shape)
            refs, nats = [], []
            for _ in range(args.repeats):  # alternating, so both backends see the same machine load
                refs.append(run_worker("pydensecrf", folder, args.sigmas, 1))
                nats.append(run_worker("native", folder, args.sigmas, args.threads))
            ref, nat = _median_run(refs), _median_run(nats)
            truth = np.load(folder / "truth.npy")
            lab_ref = np.load(folder / "pydensecrf.labels.npy")
            lab_nat = np.load(folder / "native.labels.npy")
            prob_argmax = np.load(folder / "prob.npy", mmap_mode="r").argmax(0)
            row = {
                "pydensecrf_s": ref["seconds"],
                "native_s": nat["seconds"],
                "speedup": ref["seconds"] / nat["seconds"],
                "pydensecrf_runs_s": [r["seconds"] for r in refs],
                "native_runs_s": [r["seconds"] for r in nats],
                "pydensecrf_peak_mb": ref["peak_mb"],
                "native_peak_mb": nat["peak_mb"],
                "inputs_loaded_mb": nat["loaded_mb"],
                "pydensecrf_extra_mb": ref["peak_mb"] - ref["loaded_mb"],
                "native_extra_mb": nat["peak_mb"] - nat["loaded_mb"],
                "label_agreement": float((lab_ref == lab_nat).mean()),
                "accuracy_before": float((prob_argmax == truth).mean()),
                "accuracy_pydensecrf": float((lab_ref == truth).mean()),
                "accuracy_native": float((lab_nat == truth).mean()),
            }
            result["sizes"][name] = row
            print(
                f"{name}: pydensecrf {row['pydensecrf_s']:.2f} s {row['pydensecrf_peak_mb']:.0f} MB | native "
                f"{row['native_s']:.2f} s {row['native_peak_mb']:.0f} MB | extra MB {row['pydensecrf_extra_mb']:.0f} / "
                f"{row['native_extra_mb']:.0f} | speedup {row['speedup']:.2f} | "
                f"agreement {row['label_agreement']:.4f} | accuracy {row['accuracy_before']:.3f} -> "
                f"{row['accuracy_pydensecrf']:.3f} / {row['accuracy_native']:.3f}",
                flush=True,
            )
            for f in folder.iterdir():
                f.unlink()
        if not args.quick and not args.skip_large:
            shape = (512, 512, 512)
            folder = Path(scratch) / "512x512x512"
            write_problem(folder, shape)
            nat = run_worker("native", folder, args.sigmas, args.threads)
            truth = np.load(folder / "truth.npy", mmap_mode="r")
            lab_nat = np.load(folder / "native.labels.npy", mmap_mode="r")
            result["512x512x512"] = {
                "native_s": nat["seconds"],
                "native_peak_mb": nat["peak_mb"],
                "inputs_loaded_mb": nat["loaded_mb"],
                "accuracy_native": float(np.mean([(lab_nat[z] == truth[z]).mean() for z in range(shape[0])])),
            }
            print(f"512x512x512: native {nat['seconds']:.1f} s, peak {nat['peak_mb']:.0f} MB", flush=True)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
