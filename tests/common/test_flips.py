"""The 16 flips and y/x transposes: each distinct, each undone exactly, the first eight the dihedral group in order."""

from __future__ import annotations

import pytest
import torch

from cseg_monai.common.flips import FLIP_TRANSPOSE_16, apply_flip_transpose, undo_flip_transpose


def test_every_one_of_the_16_transforms_is_distinct_and_undoes_to_the_identity():
    x = torch.rand(2, 3, 4, 6, 5)  # Y != X: the transpose changes the shape, undoing restores it
    cube = torch.rand(1, 1, 4, 6, 6)
    seen = []
    for t in FLIP_TRANSPOSE_16:
        assert torch.equal(undo_flip_transpose(apply_flip_transpose(x, t), t), x)
        seen.append(apply_flip_transpose(cube, t))
    assert len(FLIP_TRANSPOSE_16) == 16 and len(set(FLIP_TRANSPOSE_16)) == 16
    assert all(not torch.equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1 :])


def test_the_first_eight_are_the_dihedral_group_in_its_order():
    x = torch.rand(1, 1, 3, 5, 5)
    reference = [torch.rot90(torch.flip(x, (-1,)) if f else x, k, (-2, -1)) for f in (False, True) for k in range(4)]
    for t, ref in zip(FLIP_TRANSPOSE_16[:8], reference):
        assert not t[0] and torch.equal(apply_flip_transpose(x, t), ref)
    assert all(t[0] for t in FLIP_TRANSPOSE_16[8:])


def test_a_z_flip_needs_a_z_axis():
    with pytest.raises(ValueError, match="a z flip needs"):
        apply_flip_transpose(torch.rand(1, 1, 4, 4), (True, False, False, False))
