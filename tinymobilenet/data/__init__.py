"""Data that needs no network: real handwritten digits and procedural shapes.

    load_digits(resolution=None, channels=1)   (train, test): 1,437 / 360 images of 8x8
                                               digits, optionally upsampled to R x R
    load_shapes(resolution=32, ...)            (train, test): circles, squares, triangles,
                                               crosses drawn at any resolution
    batches(data, batch_size, shuffle, rng)    mini-batches (x (B, C, H, W), y (B,))
    resize(x, size), random_shift(x, s, rng)   bilinear upsampling, shift augmentation
    load_image(path, mode="RGB")               an image file's pixels, uint8 (H, W, 3)
    imagenet_transform(...), lite_transform(size), transform_for_weights(entry)
                                               pretrained weights' preprocessing:
                                               image -> (3, S, S) float32; .batch(images)
    IMAGENET_CLASSES                           the 1000 ImageNet class names, index order
    image_folder(DIR, resolution=32)           (train, test) of your own images, one
                                               subfolder per class (torchvision's layout)
    ImageTransform(...)                        image file -> the input a trained model expects

The digits are the "Optical Recognition of Handwritten Digits" data set, E. Alpaydin and
C. Kaynak (1998), UCI Machine Learning Repository, licensed CC BY 4.0; see
LICENSE-digits.txt in this folder.
"""

import numpy as np

from .arrays import Dataset, Splits, batches, random_shift, resize
from .images import IMAGE_EXTENSIONS, ImageError, load_image, open_image, to_chw
from .preprocess import (IMAGENET_CLASSES, IMAGENET_MEAN, IMAGENET_STD, ImageNetTransform,
                         LiteTransform, imagenet_transform, lite_transform,
                         transform_for_weights)
from .digits import DIGITS_TEST_SIZE, DIGITS_TRAIN_SIZE, digits_arrays, load_digits
from .folder import (FolderError, ImageTransform, find_images, image_folder, scan_folder,
                     split_files)
from .shapes import SHAPES, load_shapes, make_shapes

DATASETS = ("digits", "shapes")


def load_dataset(name: str, resolution: int | None = None, channels: int = 1, seed: int = 0) -> Splits:
    """``load_digits`` or ``load_shapes`` by name; shapes default to 32 x 32."""
    if name == "digits":
        return load_digits(resolution, channels)
    if name == "shapes":
        train, test = load_shapes(resolution or 32, seed=seed)
        if channels != 1:
            train.x, test.x = (np.repeat(d.x, channels, axis=1) for d in (train, test))
        return Splits(train, test)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


__all__ = ["Dataset", "Splits", "batches", "resize", "random_shift", "load_digits",
           "digits_arrays", "DIGITS_TRAIN_SIZE", "DIGITS_TEST_SIZE", "SHAPES", "make_shapes",
           "load_shapes", "load_dataset", "DATASETS", "load_image", "open_image", "to_chw",
           "ImageError", "IMAGE_EXTENSIONS", "IMAGENET_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD",
           "ImageNetTransform", "LiteTransform", "imagenet_transform", "lite_transform",
           "transform_for_weights", "image_folder", "ImageTransform", "FolderError",
           "find_images", "scan_folder", "split_files"]
