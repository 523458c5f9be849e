"""Pictures a person would rather look at than read: overlays, class maps, instance maps, curves."""

from cseg_monai.visualisation.pictures import (
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
    similarity_picture,
)

__all__ = [
    "CLASS_COLOURS",
    "INSTANCE_COLOURS",
    "before_after_picture",
    "class_overlay_picture",
    "cleft_picture",
    "f1_iou_plot",
    "grey_rgb",
    "instance_overlay_picture",
    "instance_slice_picture",
    "learning_curve_plot",
    "middle_plane",
    "overlay_picture",
    "reconstruction_picture",
    "similarity_picture",
    "save_png",
    "side_by_side",
]
