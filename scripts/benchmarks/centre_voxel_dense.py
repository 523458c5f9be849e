"""Dense (dilated rewrite) vs per-patch centre-voxel inference speed, per unpadded 3D backbone.

For each unpadded backbone (nominal 3D patch, random weights, 2 classes) on a random volume:

* ``patch_vox_per_s``: :func:`~cseg_monai.inferers.centre_voxel_per_patch` (batch 512) on a
  random sample of voxels, extrapolated (it costs the same per voxel everywhere);
* ``dense_vox_per_s``: :class:`~cseg_monai.inferers.CentreVoxelInferer` on the whole region
  (32x128x128, ``--quick``: 16x64x64);
* ``speedup``: their ratio; ``max_abs_diff``: the largest logit difference at the sampled voxels.

Usage::

    .venv/bin/python scripts/benchmarks/centre_voxel_dense.py --json results/centre_voxel_dense.json
    .venv/bin/python scripts/benchmarks/centre_voxel_dense.py --quick --json /tmp/centre_voxel_dense.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

UNPADDED = ("4_conv", "4_conv_ln", "dilated_conv_2_layer", "dilated_conv_2_layer_16", "3_layer_8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="16x64x64 region and 512 sampled voxels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block_size", type=int, default=None, help="dense block edge (default: one block)")
    parser.add_argument("--backbones", nargs="+", default=list(UNPADDED), choices=UNPADDED)
    args = parser.parse_args(argv)

    import torch

    from cseg_monai.inferers import CentreVoxelInferer, centre_voxel_per_patch
    from cseg_monai.networks import build_centre_voxel_net

    torch.set_num_threads(args.threads)
    shape = (16, 64, 64) if args.quick else (32, 128, 128)
    n_sample = 512 if args.quick else 2048
    n_voxels = shape[0] * shape[1] * shape[2]
    results: dict[str, dict[str, float]] = {}
    for name in args.backbones:
        torch.manual_seed(0)
        net = build_centre_voxel_net(name, 2, spatial_dims=3).eval()
        x = torch.randn((1, 1) + shape)
        voxels = torch.stack([torch.randint(0, s, (n_sample,)) for s in shape], dim=1)
        inferer = CentreVoxelInferer(net, block_size=args.block_size)

        inferer(torch.randn(1, 1, 8, 8, 8))  # warm-up
        centre_voxel_per_patch(net, x, voxels=voxels[:8])
        start = time.perf_counter()
        dense = inferer(x)
        dense_s = time.perf_counter() - start
        start = time.perf_counter()
        ref = centre_voxel_per_patch(net, x, batch_size=512, voxels=voxels)
        patch_s = time.perf_counter() - start

        picked = dense[(slice(None), slice(None)) + tuple(voxels.T)]
        row = {
            "dense_vox_per_s": n_voxels / dense_s,
            "patch_vox_per_s": n_sample / patch_s,
            "speedup": (n_voxels / dense_s) / (n_sample / patch_s),
            "max_abs_diff": float((picked - ref).abs().max()),
        }
        results[name] = row
        print(
            f"{name:24s} dense {row['dense_vox_per_s']:12.0f} vox/s  per-patch {row['patch_vox_per_s']:10.0f} vox/s"
            f"  speedup {row['speedup']:8.1f}x  max|diff| {row['max_abs_diff']:.2e}",
            flush=True,
        )
    out = {
        "region": list(shape),
        "sampled_voxels": n_sample,
        "threads": args.threads,
        "block_size": args.block_size,
        "torch": torch.__version__,
        "backbones": results,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
