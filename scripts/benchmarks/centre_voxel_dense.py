"""Dense (dilated rewrite) vs per-patch centre-voxel inference speed, per unpadded 3D backbone.

For each unpadded backbone (nominal 3D patch, random weights, 2 classes) on a random volume:

* ``patch_vox_per_s``: :func:`~cseg_monai.inferers.centre_voxel_per_patch` (batch 512) on a
  random sample of voxels, extrapolated (it costs the same per voxel everywhere);
* ``dense_vox_per_s``: :class:`~cseg_monai.inferers.CentreVoxelInferer` on the whole region
  (32x128x128, ``--quick``: 16x64x64);
* ``speedup``: their ratio; ``max_abs_diff``: the largest logit difference at the sampled voxels;
* ``mac_ratio``: multiply-accumulates of one per-patch forward over the dense MACs per output
  voxel (counted with hooks on the convolutions during the same runs): the speedup the dense
  rewrite can reach if both ran at the same MAC rate. Nets without pooling and with tiny patches
  (``3_layer_8``) have a low ratio: per patch they recompute little.

``4_conv_resnet_valid`` runs with the anisotropic ssTEM patch 9x102x102 of the organelle
bundle's Drosophila VNC config (its nominal 102^3 patch costs ~1 GMAC per voxel per patch) and
with 256 sampled voxels.

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

UNPADDED = (
    "4_conv", "4_conv_ln", "4_conv_resnet_valid", "dilated_conv_2_layer", "dilated_conv_2_layer_16", "3_layer_8",
)  # fmt: skip
PATCH = {"4_conv_resnet_valid": (9, 102, 102)}
SAMPLES = {"4_conv_resnet_valid": 256}


def _count_macs(module, run):
    """Run ``run()`` and return the multiply-accumulates of every convolution in ``module``."""
    import torch

    total = [0]

    conv_type = torch.nn.modules.conv._ConvNd

    def hook(m, _inputs, out):
        conv = m if isinstance(m, conv_type) else m.conv  # the dense rewrite's _DenseConv wraps its conv
        per_out = (conv.in_channels // conv.groups) * int(torch.tensor(conv.kernel_size).prod())
        total[0] += per_out * out.numel()

    convs = [m for m in module.modules() if isinstance(m, conv_type) or type(m).__name__ == "_DenseConv"]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


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
        net = build_centre_voxel_net(name, 2, spatial_dims=3, patch_size=PATCH.get(name)).eval()
        x = torch.randn((1, 1) + shape)
        n_net = min(n_sample, SAMPLES.get(name, n_sample))
        voxels = torch.stack([torch.randint(0, s, (n_net,)) for s in shape], dim=1)
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
        with torch.no_grad():
            patch_macs = _count_macs(net, lambda: net(torch.randn((1, 1) + net.patch_size)))  # noqa: B023 (called here)
            dense_net = inferer.dense_net(net)
            dense_macs = _count_macs(dense_net, lambda: inferer(x))  # noqa: B023 (called here)
        row = {
            "patch_size": list(net.patch_size),
            "dense_vox_per_s": n_voxels / dense_s,
            "patch_vox_per_s": n_net / patch_s,
            "speedup": (n_voxels / dense_s) / (n_net / patch_s),
            "mac_ratio": patch_macs / (dense_macs / n_voxels),
            "max_abs_diff": float((picked - ref).abs().max()),
        }
        results[name] = row
        print(
            f"{name:24s} dense {row['dense_vox_per_s']:12.0f} vox/s  per-patch {row['patch_vox_per_s']:10.0f} vox/s"
            f"  speedup {row['speedup']:8.1f}x  MAC ratio {row['mac_ratio']:8.1f}  max|diff| {row['max_abs_diff']:.2e}",
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
