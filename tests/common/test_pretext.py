"""The tensor arithmetic the pretext losses and metrics share, against hand computations."""

from __future__ import annotations

import pytest
import torch

from cseg_monai.common.pretext import cell_centres, masked_error, positive_pairs, positive_similarities
from cseg_monai.losses import PixProLoss


def _grid(size: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.stack([ys, xs])[None]


def test_masked_error_counts_hidden_voxels_times_channels():
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    total, count = masked_error(torch.zeros(2, 3, 2, 2), torch.cat([torch.ones(2, 3, 2, 2), mask.expand(2, 1, 2, 2)], dim=1))
    assert (total.item(), count.item()) == (12.0, 12.0), "2 items x 3 channels x 2 hidden voxels"
    total, _ = masked_error(torch.zeros(1, 1, 2, 2), torch.stack([torch.full((2, 2), 3.0), mask])[None], "l1")
    assert total.item() == 6.0
    with pytest.raises(ValueError, match="must be 'mse' or 'l1'"):
        masked_error(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2), "huber")
    with pytest.raises(ValueError, match=r"got \(1, 1, 2, 2\) and \(1, 1, 2, 2\)"):
        masked_error(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_positive_pairs_follow_the_original_coordinates_through_flips():
    a = _grid(8)
    flipped = a.flip(-1)  # the same pixels, shown mirrored
    pos = positive_pairs(a, flipped, (4, 4))[0]
    assert pos.sum() == 16 and all(pos[i, (i // 4) * 4 + 3 - i % 4] for i in range(16)), "each cell meets its mirror image"
    assert positive_pairs(a, a + 100, (4, 4)).sum() == 0, "crops that do not overlap have no positive pair"
    assert cell_centres(a, (4, 4))[0, 0].tolist() == [0.5, 0.5]


def test_positive_pairs_threshold_is_in_cell_diagonals():
    a = _grid(8)  # 4 x 4 cells of 2 x 2 pixels: diagonal 2 sqrt(2) = 2.83
    shifted = a + torch.tensor([0.0, 1.0])[None, :, None, None]  # view 2 half a cell to the right: neighbours 1 apart
    # each row: view 2's cells 0-2 lie 1 from two of view 1's cells, cell 3 from one; the next nearest are sqrt(5) apart
    assert positive_pairs(a, shifted, (4, 4), threshold=0.7).sum() == 4 * 7, "1 < 0.7 x 2.83 < sqrt(5)"
    assert positive_pairs(a, shifted, (4, 4), threshold=1 / 8**0.5 - 0.01).sum() == 0, "a limit just under 1: none"


def test_similarities_are_what_the_loss_reports():
    torch.manual_seed(0)
    outs = [torch.rand(2, 5, 4, 4) for _ in range(4)] + [torch.rand(2, 5) for _ in range(4)]
    coords = torch.cat([_grid(8), _grid(8).flip(-2)], dim=1).expand(2, -1, -1, -1)
    total, count = positive_similarities(outs, coords)
    assert count.item() == 2 * 2 * 16, "2 items x 16 mirrored pairs x 2 directions"
    y1, y2, t1, t2 = (torch.nn.functional.normalize(o, dim=1) for o in outs[:4])
    by_hand = sum(
        (y1[b, :, i, j] * t2[b, :, 3 - i, j]).sum() + (y2[b, :, 3 - i, j] * t1[b, :, i, j]).sum() for b in range(2) for i in range(4) for j in range(4)
    )
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss = PixProLoss(instance_weight=0.0)(outs, coords)
    assert loss.item() == pytest.approx(-2.0 * total.item() / count.item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"coordinate maps \(B, 4, \*spatial\), got \(2, 2, 8, 8\)"):
        positive_similarities(outs, coords[:, :2])
