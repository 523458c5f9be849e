"""Tests of the synthetic EM phantom (cseg_monai.data.phantom)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from cseg_monai.data.phantom import (
    CLASS_NAMES,
    CYTOPLASM,
    MEMBRANE,
    MITO_MEMBRANE,
    MITOCHONDRION,
    NUM_CLASSES,
    SYNAPSE,
    VESICLE,
    Phantom,
    make_phantom,
    write_phantom_dataset,
)

SHAPE_3D = (24, 96, 96)


@pytest.fixture(scope="module")
def p2d() -> Phantom:
    return make_phantom((256, 256), seed=0)


@pytest.fixture(scope="module")
def p3d() -> Phantom:
    return make_phantom(SHAPE_3D, seed=0)


@pytest.fixture(scope="module")
def p3d_aniso() -> Phantom:
    return make_phantom((16, 128, 128), seed=0, spacing=(5.0, 1.0, 1.0))


def _face(ndim: int) -> np.ndarray:
    return ndi.generate_binary_structure(ndim, 1)


def _full(ndim: int) -> np.ndarray:
    return ndi.generate_binary_structure(ndim, ndim)


def _assert_closed(p: Phantom, structure: np.ndarray | None = None) -> None:
    """Every connected piece of non-membrane lies in one cell, one piece per cell."""
    boundary = (p.semantic == MEMBRANE) | (p.semantic == SYNAPSE)
    struct = _face(p.ndim) if structure is None else structure
    comp, ncomp = ndi.label(~boundary, structure=struct)
    assert ncomp == p.n_cells
    inst = p.instances.ravel()
    flat = comp.ravel()
    sel = flat > 0
    lo = np.full(ncomp + 1, np.iinfo(np.int32).max)
    hi = np.zeros(ncomp + 1, dtype=np.int64)
    np.minimum.at(lo, flat[sel], inst[sel])
    np.maximum.at(hi, flat[sel], inst[sel])
    assert np.array_equal(lo[1:], hi[1:]), "a non-membrane piece spans two cells"
    assert sorted(hi[1:].tolist()) == list(range(1, p.n_cells + 1)), "a cell has no or two interior pieces"


def _instance_ids_of_components(mask: np.ndarray, inst: np.ndarray, structure: np.ndarray) -> list[set[int]]:
    comp, n = ndi.label(mask, structure=structure)
    return [set(np.unique(inst[sl][comp[sl] == i + 1]).tolist()) for i, sl in enumerate(ndi.find_objects(comp))]


def _membrane_width(mask: np.ndarray) -> float:
    """Mean width of a 2D line network: its area divided by its centre-line length."""
    sk = skeletonize(mask)
    k4 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    kd = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    n4 = ndi.convolve(sk.astype(np.int64), k4, mode="constant")[sk].sum()
    nd = ndi.convolve(sk.astype(np.int64), kd, mode="constant")[sk].sum()
    length = (n4 + np.sqrt(2.0) * nd) / 2.0
    return float(mask.sum() / length)


# --------------------------------------------------------------------------- #
# basics
# --------------------------------------------------------------------------- #
def test_class_constants() -> None:
    assert (CYTOPLASM, MEMBRANE, MITOCHONDRION, MITO_MEMBRANE, SYNAPSE, VESICLE) == tuple(range(6))
    assert NUM_CLASSES == len(CLASS_NAMES) == 6
    assert CLASS_NAMES[MEMBRANE] == "membrane" and CLASS_NAMES[VESICLE] == "vesicle"


@pytest.mark.parametrize("shape", [(256, 256), (100, 37), SHAPE_3D, (3, 40, 50)])
def test_shapes_and_dtypes(shape: tuple[int, ...]) -> None:
    p = make_phantom(shape, seed=1)
    for arr, dtype in ((p.image, np.uint8), (p.semantic, np.uint8), (p.instances, np.int32)):
        assert arr.shape == shape
        assert arr.dtype == dtype
    assert p.ndim == len(shape)
    assert p.semantic.max() < NUM_CLASSES
    # consecutive ids 1..N, 0 nowhere
    assert p.instances.min() == 1
    assert np.array_equal(np.unique(p.instances), np.arange(1, p.n_cells + 1))


def test_deterministic(p2d: Phantom) -> None:
    again = make_phantom((256, 256), seed=0)
    for a, b in ((p2d.image, again.image), (p2d.semantic, again.semantic), (p2d.instances, again.instances)):
        assert np.array_equal(a, b)
    other = make_phantom((256, 256), seed=1)
    assert not np.array_equal(p2d.image, other.image)
    assert not np.array_equal(p2d.semantic, other.semantic)
    v1 = make_phantom((8, 48, 48), seed=5)
    v2 = make_phantom((8, 48, 48), seed=5)
    assert np.array_equal(v1.image, v2.image) and np.array_equal(v1.instances, v2.instances)


def test_every_class_present(p2d: Phantom, p3d: Phantom, p3d_aniso: Phantom) -> None:
    for p in (p2d, p3d, p3d_aniso):
        counts = np.bincount(p.semantic.ravel(), minlength=NUM_CLASSES)
        assert np.all(counts > 0), dict(zip(CLASS_NAMES, counts.tolist()))
        assert counts[CYTOPLASM] == counts.max()


def test_class_fractions_sum_to_one(p2d: Phantom) -> None:
    fr = p2d.class_fractions()
    assert set(fr) == set(CLASS_NAMES)
    assert abs(sum(fr.values()) - 1.0) < 1e-9


def test_n_cells_respected() -> None:
    p = make_phantom((200, 200), seed=2, n_cells=7)
    assert p.n_cells == 7
    one = make_phantom((64, 64), seed=2, n_cells=1)
    assert one.n_cells == 1
    assert not np.any(one.semantic == MEMBRANE)
    assert np.all(one.instances == 1)


# --------------------------------------------------------------------------- #
# geometry
# --------------------------------------------------------------------------- #
def test_membranes_closed_2d(p2d: Phantom) -> None:
    _assert_closed(p2d)
    # at the default thickness cells are separated even diagonally
    _assert_closed(p2d, _full(2))


@pytest.mark.parametrize("thickness", [1, 2, 4, 6])
def test_membranes_closed_other_thickness(thickness: int) -> None:
    _assert_closed(make_phantom((192, 192), seed=3, membrane_thickness=thickness))


def test_membranes_closed_3d(p3d: Phantom, p3d_aniso: Phantom) -> None:
    _assert_closed(p3d)
    _assert_closed(p3d_aniso)


@pytest.mark.parametrize("thickness", [3, 5])
def test_membrane_thickness(thickness: int) -> None:
    widths = []
    for seed in range(2):
        p = make_phantom((256, 256), seed=seed, membrane_thickness=thickness, n_synapses=0)
        widths.append(_membrane_width(p.semantic == MEMBRANE))
    assert abs(np.median(widths) - thickness) <= 1.0, widths


def test_thicker_membranes_are_thicker() -> None:
    fr = [float((make_phantom((192, 192), seed=4, membrane_thickness=t).semantic == MEMBRANE).mean())
          for t in (2, 4, 8)]
    assert fr[0] < fr[1] < fr[2]


@pytest.mark.parametrize("which", ["p2d", "p3d", "p3d_aniso"])
def test_mitochondria_inside_cells(which: str, request: pytest.FixtureRequest) -> None:
    p: Phantom = request.getfixturevalue(which)
    mito = (p.semantic == MITOCHONDRION) | (p.semantic == MITO_MEMBRANE)
    full = _full(p.ndim)
    comp, n = ndi.label(mito, structure=full)
    assert n >= 1
    cell_boundary = (p.semantic == MEMBRANE) | (p.semantic == SYNAPSE)
    for i, sl in enumerate(ndi.find_objects(comp)):
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        one = comp[grown] == i + 1
        assert len(np.unique(p.instances[grown][one])) == 1
        # never touches a cell membrane, not even diagonally
        assert not np.any(cell_boundary[grown][ndi.binary_dilation(one, structure=full)])
        # the matrix is enclosed by the mitochondrial membrane
        matrix = one & (p.semantic[grown] == MITOCHONDRION)
        ring = ndi.binary_dilation(matrix, structure=_face(p.ndim)) & ~matrix
        assert np.all(p.semantic[grown][ring] == MITO_MEMBRANE)


def test_vesicles_and_synapses(p2d: Phantom, p3d: Phantom) -> None:
    for p in (p2d, p3d):
        full = _full(p.ndim)
        for ids in _instance_ids_of_components(p.semantic == VESICLE, p.instances, full):
            assert len(ids) == 1  # each vesicle inside one cell
        ves_near = ndi.binary_dilation(p.semantic == VESICLE, structure=_face(p.ndim))
        assert not np.any(ves_near & (p.semantic == MEMBRANE))
        # a synaptic density sits on the membrane between exactly two cells
        for ids in _instance_ids_of_components(p.semantic == SYNAPSE, p.instances, full):
            assert len(ids) == 2
        # and each one has a vesicle cloud nearby
        syn = p.semantic == SYNAPSE
        near = ndi.binary_dilation(syn, iterations=15)
        assert np.any(near & (p.semantic == VESICLE))


def test_anisotropic_spacing(p3d_aniso: Phantom) -> None:
    assert p3d_aniso.image.shape == (16, 128, 128)
    iso = make_phantom((16, 128, 128), seed=0)
    # cells are physically as large: with 5x thicker sections there are more of them
    assert p3d_aniso.n_cells > iso.n_cells
    other = make_phantom((8, 64, 64), seed=0, spacing=(3.0, 2.0, 2.0))
    _assert_closed(other)


def test_no_synapses_no_vesicles_no_mitos() -> None:
    p = make_phantom((128, 128), seed=0, n_synapses=0, mito_fraction=0.0)
    assert set(np.unique(p.semantic).tolist()) == {CYTOPLASM, MEMBRANE}
    q = make_phantom((256, 256), seed=0, vesicles=False)
    assert np.any(q.semantic == SYNAPSE) and not np.any(q.semantic == VESICLE)


# --------------------------------------------------------------------------- #
# image
# --------------------------------------------------------------------------- #
def test_membranes_darker_than_cytoplasm(p2d: Phantom, p3d: Phantom) -> None:
    for p in (p2d, p3d):
        img = p.image.astype(np.float64)
        mem = img[p.semantic == MEMBRANE].mean()
        cyto = img[p.semantic == CYTOPLASM].mean()
        mito = img[p.semantic == MITOCHONDRION].mean()
        syn = img[p.semantic == SYNAPSE].mean()
        assert mem < cyto - 0.2 * 255
        assert mito < cyto
        assert syn < mem


def test_image_controls() -> None:
    clean = make_phantom((128, 128), seed=3, noise_std=0.0, blur_sigma=0.0, illumination=0.0)
    noisy = make_phantom((128, 128), seed=3)
    # labels do not depend on the image settings
    assert np.array_equal(clean.semantic, noisy.semantic)
    assert np.array_equal(clean.instances, noisy.instances)
    # without noise, blur and illumination the membrane grey level is constant
    assert len(np.unique(clean.image[clean.semantic == MEMBRANE])) == 1
    assert noisy.image.std() > 0


# --------------------------------------------------------------------------- #
# arguments
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (64,)}, "shape"),
        ({"shape": (4, 4, 4, 4)}, "shape"),
        ({"shape": (0, 64)}, "shape"),
        ({"shape": (64.0, 64)}, "shape"),
        ({"shape": (True, 64)}, "shape"),
        ({"shape": "64x64"}, "shape"),
        ({"shape": 64}, "shape"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"n_cells": 0}, "n_cells"),
        ({"n_cells": 64 * 64 + 1}, "n_cells"),
        ({"membrane_thickness": 0}, "membrane_thickness"),
        ({"membrane_thickness": 2.5}, "membrane_thickness"),
        ({"spacing": (1.0,)}, "spacing"),
        ({"spacing": (0.0, 1.0)}, "spacing"),
        ({"spacing": (-1.0, 1.0)}, "spacing"),
        ({"spacing": (float("nan"), 1.0)}, "spacing"),
        ({"mito_fraction": 1.5}, "mito_fraction"),
        ({"mito_fraction": -0.1}, "mito_fraction"),
        ({"n_synapses": -1}, "n_synapses"),
        ({"vesicles": "yes"}, "vesicles"),
        ({"blur_sigma": -1.0}, "blur_sigma"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("inf")}, "noise_std"),
        ({"illumination": 1.0}, "illumination"),
        ({"illumination": -0.5}, "illumination"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"shape": (64, 64), **kwargs}
    shape = args.pop("shape")
    with pytest.raises(ValueError, match=match):
        make_phantom(shape, **args)


# --------------------------------------------------------------------------- #
# datasets on disk
# --------------------------------------------------------------------------- #
def test_write_isbi_dataset(tmp_path) -> None:
    out = tmp_path / "isbi"
    info = write_phantom_dataset(out, n_train=3, n_test=2, size=128, seed=10)
    assert info["layout"] == "isbi" and info["n_files"] == 3 * 4 + 2
    for kind, n in (("train/image", 3), ("train/label", 3), ("train/semantic", 3), ("train/instances", 3),
                    ("test/image", 2)):
        assert len(info["files"][kind]) == n
        assert all(os.path.isfile(f) for f in info["files"][kind])
    # no temporary files left behind
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".") or f.endswith(".tmp")]
    for i in range(3):
        ref = make_phantom((128, 128), seed=10 + i)
        img = np.asarray(Image.open(out / "train" / "image" / f"{i}.png"))
        lab = np.asarray(Image.open(out / "train" / "label" / f"{i}.png"))
        assert img.dtype == np.uint8 and img.shape == (128, 128)
        assert np.array_equal(img, ref.image)
        assert set(np.unique(lab).tolist()) == {0, 255}
        assert 0.05 <= float((lab == 0).mean()) <= 0.40
        boundary = (ref.semantic == MEMBRANE) | (ref.semantic == SYNAPSE)
        assert np.array_equal(lab == 0, boundary)  # mito membranes are not label 0
        sem = tifffile.imread(out / "train" / "semantic" / f"{i}.tif")
        ins = tifffile.imread(out / "train" / "instances" / f"{i}.tif")
        assert sem.dtype == np.uint8 and np.array_equal(sem, ref.semantic)
        assert ins.dtype in (np.uint16, np.int32) and np.array_equal(ins.astype(np.int32), ref.instances)
    test_img = np.asarray(Image.open(out / "test" / "image" / "1.png"))
    assert np.array_equal(test_img, make_phantom((128, 128), seed=10 + 3 + 1).image)
    assert 0.05 <= info["membrane_fraction"] <= 0.40


def test_write_refuses_non_empty(tmp_path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty") as err:
        write_phantom_dataset(out, n_train=1, n_test=0, size=32)
    assert str(out) in str(err.value)
    info = write_phantom_dataset(out, n_train=1, n_test=0, size=32, overwrite=True)
    assert info["n_files"] == 4 and (out / "keep.txt").exists()
    # an existing empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    write_phantom_dataset(empty, n_train=1, n_test=1, size=32)
    # a file is refused
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        write_phantom_dataset(f, n_train=1, size=32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"layout": "zarr"}, "layout"), ({"n_train": 0}, "n_train"), ({"n_test": -1}, "n_test"),
     ({"size": 8}, "size"), ({"seed": -2}, "seed"), ({"noise_std": -1.0}, "noise_std")],
)
def test_write_bad_arguments(tmp_path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_phantom_dataset(tmp_path / "x", **{"size": 32, "n_train": 1, **kwargs})


def test_write_volume_dataset(tmp_path) -> None:
    out = tmp_path / "vol"
    info = write_phantom_dataset(out, n_train=6, size=64, seed=2, layout="volume", spacing=(4.0, 1.0, 1.0))
    assert sorted(os.listdir(out)) == ["image.tif", "instances.tif", "semantic.tif"]
    ref = make_phantom((6, 64, 64), seed=2, spacing=(4.0, 1.0, 1.0))
    img = tifffile.imread(out / "image.tif")
    sem = tifffile.imread(out / "semantic.tif")
    ins = tifffile.imread(out / "instances.tif")
    assert img.shape == sem.shape == ins.shape == (6, 64, 64)
    with tifffile.TiffFile(out / "image.tif") as tf:
        assert len(tf.pages) == 6
    assert np.array_equal(img, ref.image) and np.array_equal(sem, ref.semantic)
    assert np.array_equal(ins.astype(np.int32), ref.instances)
    assert info["layout"] == "volume" and info["n_files"] == 3
