"""Boundary targets and U-Net weight maps against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cseg_monai.transforms import InstanceTargetsd, boundary_target, class_balance_weights, unet_weight_map


def _reference_weight_map(labels, w0, sigma, spacing):
    """d1, d2 from one full scipy EDT per instance (slow, exact): the definition itself."""
    ids = [i for i in np.unique(labels) if i != 0]
    dists = np.stack([ndimage.distance_transform_edt(labels != i, sampling=spacing) for i in ids])
    dists.sort(axis=0)
    d1, d2 = dists[0], dists[1]
    return w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


def test_weight_map_equals_the_definition_anisotropic():
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 40, 40), np.int64)
    for i in range(1, 6):  # random touching boxes
        z, y, x = rng.integers(0, 4), rng.integers(0, 30), rng.integers(0, 30)
        labels[z : z + 2, y : y + 10, x : x + 10] = i
    spacing = (4.0, 1.0, 1.0)
    got = unet_weight_map(labels, w0=10.0, sigma=3.0, spacing=spacing, class_balance=False)
    ref = 1.0 + _reference_weight_map(labels, 10.0, 3.0, spacing)
    # windows of 3 sigma leave out only terms below w0 * exp(-4.5)
    np.testing.assert_allclose(got, ref, atol=10.0 * np.exp(-4.5) + 1e-4)
    # and anisotropy matters: with cubic voxels the map differs
    assert np.abs(unet_weight_map(labels, 10.0, 3.0, class_balance=False) - got).max() > 1.0


def test_contacts_get_weight_isolated_borders_do_not():
    labels = np.zeros((40, 60), np.int64)
    labels[5:35, 5:25] = 1
    labels[5:35, 26:45] = 2  # touches 1 across a 1-pixel gap
    labels[5:35, 52:58] = 3  # 7 pixels away from 2
    w = unet_weight_map(labels, w0=10.0, sigma=2.0, class_balance=False)
    assert w[20, 25] == pytest.approx(1 + 10 * np.exp(-((1 + 1) ** 2) / 8), rel=1e-4)  # the gap pixel: d1 = d2 = 1
    assert w[20, 2] == pytest.approx(1.0, abs=1e-6)  # outer border of an isolated side
    assert w[20, 25] > w[20, 48] > 1.0


def test_boundaries_and_class_balance():
    labels = np.array([[1, 1, 1, 2, 2, 2]])
    assert boundary_target(labels).tolist() == [[0, 0, 1, 1, 0, 0]]
    assert boundary_target(np.array([[[1, 0], [0, 0]]])).sum() == 4  # 3D, full connectivity
    w = class_balance_weights(boundary_target(labels))
    assert w.mean() == pytest.approx(1.0) and w[0, 2] == pytest.approx(2 * w[0, 0])


def test_in_plane_boundaries_keep_the_planes_of_thin_objects():
    # a 3-plane blob under 3D thick boundaries loses its whole top plane (and the background
    # plane above it becomes boundary); in-plane boundaries keep only its rim per plane
    lab = np.zeros((4, 12, 12), np.int64)
    lab[:3, 2:10, 2:10] = 1
    thick, flat = boundary_target(lab), boundary_target(lab, in_plane=True)
    assert thick[2, 2:10, 2:10].all() and thick[3, 2:10, 2:10].all()
    assert flat[3].sum() == 0 and not flat[1, 3:9, 3:9].any()
    assert (flat[0] == boundary_target(lab[0])).all()
    # a contact between two objects across planes is still boundary, on both sides
    lab[3, 2:10, 2:10] = 2
    flat = boundary_target(lab, in_plane=True)
    assert flat[2, 2:10, 2:10].all() and flat[3, 2:10, 2:10].all() and not flat[1, 3:9, 3:9].any()
    out = InstanceTargetsd("label", in_plane=True)({"label": lab[None]})
    assert (out["boundary"][0] == flat).all()
    two_d = InstanceTargetsd("label", in_plane=True)({"label": lab[0][None]})["boundary"][0]
    assert (two_d == boundary_target(lab[0])).all()  # 2D labels: the option is ignored
    with pytest.raises(ValueError, match="in_plane boundaries need 3D"):
        boundary_target(lab[0], in_plane=True)


def test_transform_outputs_and_bad_labels():
    labels = np.zeros((1, 8, 20, 20), np.int64)
    labels[0, :, 2:10, 2:18], labels[0, :, 10:18, 2:18] = 4, 9
    out = InstanceTargetsd("label", foreground_key="foreground", spacing=(2.0, 1.0, 1.0))({"label": labels})
    for key in ("boundary", "foreground", "weight"):
        assert out[key].shape == (1, 8, 20, 20) and out[key].dtype == np.float32
    assert out["foreground"].sum() == (labels > 0).sum()
    assert (out["weight"] > 0).all()  # no voxel is left without weight
    with pytest.raises(ValueError, match="label: instance labels must be integers"):
        InstanceTargetsd("label")({"label": np.full((1, 4, 4), 0.5)})
    with pytest.raises(ValueError, match="negative ids"):
        InstanceTargetsd("label")({"label": -np.ones((1, 4, 4), np.int64)})
    with pytest.raises(ValueError, match="2D \\(Y, X\\) or 3D"):
        boundary_target(np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="spacing must be 2 positive numbers"):
        unet_weight_map(np.zeros((4, 4), np.int64), spacing=(1.0,))
