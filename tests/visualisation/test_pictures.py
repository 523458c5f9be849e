"""Pictures: what each panel shows, sizes, atomic PNG files, curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cseg_monai.visualisation import (
    CLASS_COLOURS,
    INSTANCE_COLOURS,
    before_after_picture,
    class_overlay_picture,
    cleft_picture,
    f1_iou_plot,
    grey_rgb,
    instance_overlay_picture,
    instance_slice_picture,
    learning_curve_plot,
    middle_plane,
    overlay_picture,
    reconstruction_picture,
    save_png,
    side_by_side,
    track_picture,
)


def test_overlay_picture_marks_prediction_and_truth():
    image = np.zeros((1, 6, 6), np.float32)
    image[0, :, 3:] = 1.0
    prob = np.zeros((1, 6, 6), np.float32)
    prob[0, 2, :] = 0.9
    label = np.zeros((1, 6, 6), np.float32)
    label[0, :, 1] = 1
    pic = overlay_picture(image, prob, label)
    assert pic.shape == (6, 26, 3) and pic.dtype == np.uint8
    over = pic[:, 20:]
    assert over[2, 4, 0] > 200 and over[2, 4, 1] < 200  # prediction red
    assert over[4, 1, 1] >= 200  # ground truth green
    # a 3D volume shows its middle plane
    assert overlay_picture(np.random.rand(1, 5, 6, 6), np.random.rand(1, 5, 6, 6)).shape == (6, 26, 3)


def test_cleft_picture_shows_the_section_with_the_most_clefts():
    image = np.random.default_rng(0).random((1, 5, 8, 8)).astype(np.float32)
    label = np.zeros((1, 5, 8, 8), np.float32)
    label[0, 1, 2:5, 2:5] = 1  # the clefts lie in section 1, not the middle one
    prob = np.zeros_like(label)
    prob[0, 1, 3, 3:7] = 0.9
    pic = cleft_picture(image, prob, label)
    assert pic.shape == (8, 32, 3)
    raw, probability, over = pic[:, :8], pic[:, 12:20], pic[:, 24:]
    assert np.allclose(raw[..., 0], grey_rgb(image[0, 1])[..., 0] * 255, atol=1)  # section 1, not 2
    assert probability[3, 4, 0] > 200 and probability[0, 0, 0] == 0
    assert over[2, 2, 1] > 200 and over[2, 2, 0] < 200  # true cleft only: green
    assert over[3, 3, 0] > 200 and over[3, 3, 1] > 200  # both: yellow
    assert over[3, 6, 0] > 200 and over[3, 6, 1] < 200  # predicted only: red
    no_truth = cleft_picture(image, prob, None)
    assert no_truth.shape == (8, 32, 3)


def test_grey_and_middle_plane():
    vol = np.arange(3 * 4 * 5, dtype=np.float32).reshape(1, 3, 4, 5)
    assert middle_plane(vol).tolist() == vol[0, 1].tolist()
    grey = grey_rgb(np.array([[0.0, 5.0, 10.0]]), 0.0, 10.0)
    assert grey.shape == (1, 3, 3) and grey[0, :, 0].tolist() == [0.0, 0.5, 1.0]
    assert (grey_rgb(np.zeros((4, 4))) == 0).all()  # a constant plane: no division by zero
    with pytest.raises(ValueError, match="2D plane"):
        grey_rgb(np.zeros((2, 2, 2)))


def test_side_by_side_gaps_and_enlargement():
    pic = side_by_side([np.zeros((2, 3, 3)), np.zeros((2, 2, 3))], gap=1, min_height=5)
    assert pic.shape == (6, 18, 3) and pic.dtype == np.uint8  # 3 x (2 rows, 6 columns)
    assert (pic[:, 9:12] == 255).all() and (pic[:, :9] == 0).all()  # the white gap, scaled 3x
    with pytest.raises(ValueError, match="one height"):
        side_by_side([np.zeros((2, 3, 3)), np.zeros((3, 3, 3))])


def test_class_overlay_colours_classes_and_leaves_unlabelled_bare():
    image = np.full((1, 4, 4), 0.5, np.float32)
    prob = np.zeros((6, 4, 4), np.float32)
    prob[2] = 1.0  # everything mitochondrion
    label = np.full((1, 4, 4), 255)
    label[0, 0, 0] = 4
    pic = class_overlay_picture(image, prob, label)
    assert pic.shape == (4, 20, 3)
    pred, truth = pic[:, 8:12] / 255, pic[:, 16:20] / 255  # panels of 4 with gaps of 4
    grey = pic[0, 0, 0] / 255
    assert np.allclose(pred[1, 1], 0.55 * grey + 0.45 * CLASS_COLOURS[2], atol=1 / 255)
    assert np.allclose(truth[0, 0], 0.55 * grey + 0.45 * CLASS_COLOURS[4], atol=1 / 255)
    assert np.allclose(truth[2, 2], grey, atol=1 / 255)  # unlabelled: the bare image


def test_before_after_has_four_panels_with_the_refined_classes():
    image = np.random.rand(1, 6, 6)
    before, after = np.zeros((6, 6, 6)), np.zeros((6, 6, 6))
    before[0], after[1] = 1, 1
    pic = before_after_picture(image, before, after, np.ones((6, 6), int))
    assert pic.shape == (6, 4 * 6 + 3 * 4, 3)
    assert not np.array_equal(pic[:, 10:16], pic[:, 20:26])  # before and after differ
    assert np.array_equal(pic[:, 20:26], pic[:, 30:36])  # after == ground truth (class 1 everywhere)


def test_instance_pictures_colour_each_id_and_outline():
    ids = np.zeros((8, 8), int)
    ids[:, :4], ids[:, 4:] = 3, 5
    pic = instance_overlay_picture(np.zeros((1, 8, 8)), ids[None])
    assert pic.shape == (256, 2 * 256 + 4 * 32, 3)  # 2 panels of 8 + a gap of 4, enlarged 32x
    view = instance_slice_picture(np.zeros((8, 8)), ids, boundary=np.ones((8, 8)), min_height=8)
    assert view.shape == (8, 3 * 8 + 2 * 2, 3)
    over = view[:, 10:18] / 255
    assert np.allclose(over[4, 1], 0.55 * INSTANCE_COLOURS[3], atol=1 / 255)
    assert (over[4, 3] == 1).all()  # the inner outline of object 3 is white
    with pytest.raises(ValueError, match="do not match"):
        instance_slice_picture(np.zeros((8, 8)), ids[:4])


def test_save_png_is_atomic_and_checks_its_input(tmp_path):
    path = save_png(np.zeros((3, 4, 3), np.uint8), tmp_path / "a" / "p.png")
    with Image.open(path) as im:
        assert im.size == (4, 3)
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]  # no temporary file left
    with pytest.raises(ValueError, match="p.png: a picture must be uint8"):
        save_png(np.zeros((3, 4)), tmp_path / "p.png")


def test_curves_write_pngs(tmp_path):
    assert learning_curve_plot([], {}, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    png = learning_curve_plot([(i, 1 / (i + 1)) for i in range(200)], {"val_dice": [(2, 0.7), (1, 0.5)]}, tmp_path / "c.png")
    with Image.open(png) as im:
        assert im.size[0] > im.size[1] > 100
    f1 = f1_iou_plot({"a": {"thresholds": [0.5, 0.75], "f1": [0.8, 0.4]}}, tmp_path / "f1.png")
    with Image.open(f1) as im:
        assert im.format == "PNG"


def test_reconstruction_picture_pastes_centre_regions_and_shows_whole_patches():
    patch = np.zeros((1, 31, 31), np.float32)
    pic = reconstruction_picture([(patch, np.ones(9), np.full(9, 0.5))], lo=0.0, hi=1.0, window=24)
    scale = pic.shape[0] // 24
    assert pic.shape[0] % 24 == 0 and scale >= 8
    row = pic[12 * scale + scale // 2]
    # panels: masked input (black), prediction pasted (white centre), truth pasted (grey centre)
    width = 24 * scale
    gap = (pic.shape[1] - 3 * width) // 2
    assert row[12 * scale, 0] == 0 and row[width + gap + 12 * scale, 0] == 255 and row[2 * (width + gap) + 12 * scale, 0] in (127, 128)
    vae = reconstruction_picture([(np.zeros((1, 4, 16, 16)), np.ones((1, 4, 16, 16)), np.zeros((1, 4, 16, 16)))] * 3)
    assert vae.shape[0] > vae.shape[1] / 3, "three rows"
    with pytest.raises(ValueError, match="neither a patch"):
        reconstruction_picture([(patch, np.ones(8), np.ones(8))])


def test_reconstruction_picture_of_masked_image_modelling_shows_the_prediction_in_the_cubes_only():
    original = np.linspace(-2, 2, 32 * 32, dtype=np.float32).reshape(1, 32, 32)
    mask = np.zeros((1, 32, 32), np.float32)
    mask[:, 8:16, 8:16] = 1
    masked = np.where(mask > 0, 0.0, original)
    pred = np.full_like(original, 5.0)  # far out of range: white wherever it shows
    pic = reconstruction_picture([(masked, pred, np.concatenate([original, mask]))])
    scale = pic.shape[0] // 32
    width = 32 * scale
    gap = (pic.shape[1] - 3 * width) // 2
    middle = pic[:, width + gap : 2 * width + gap, 0]
    assert (middle[12 * scale, 12 * scale]) == 255, "the prediction inside the cube"
    left = pic[:, :width, 0]
    assert middle[28 * scale, 4 * scale] == left[28 * scale, 4 * scale], "the input outside it"
    assert middle[28 * scale, 4 * scale] < 255


def test_track_picture_keeps_an_object_s_colour_along_the_sections():
    image = np.zeros((4, 10, 10))
    ids = np.zeros((4, 10, 10), np.int64)
    ids[:, 2:6, 2:6] = 7
    truth = ids.copy()
    truth[2:] *= 2  # the truth row changes colour halfway, the traced row does not
    pic = track_picture(image, ids, truth, sections=[0, 3], min_height=10)
    assert pic.shape == (22, 22, 3) and pic.dtype == np.uint8 and (pic[10:12] == 255).all()  # a white gap between the rows
    top_left, top_right = pic[3, 3], pic[3, 15]
    bottom_left, bottom_right = pic[15, 3], pic[15, 15]
    assert np.allclose(top_left, top_right) and not np.allclose(bottom_left, bottom_right)
    assert np.allclose(top_left, 0.6 * 255 * INSTANCE_COLOURS[7] + 0.4 * pic[0, 0], atol=1)  # 8-bit RGB, the grey image black
    with pytest.raises(ValueError, match="one shape"):
        track_picture(image, ids[:2])
