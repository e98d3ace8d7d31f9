"""The 8x8 handwritten digits shipped with the package, split and optionally upsampled.

Data: "Optical Recognition of Handwritten Digits", E. Alpaydin and C. Kaynak (1998), UCI
Machine Learning Repository, CC BY 4.0 (see LICENSE-digits.txt beside this file). 1,797
images of 8x8 integer pixels in 0..16, labels 0..9.

Split (fixed for good by digits_test_indices.txt): 360 test images, 36 of each digit,
drawn once with a seeded shuffle per class; the other 1,437 images are for training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .arrays import Dataset, Splits, resize

__all__ = ["load_digits", "digits_arrays", "DIGITS_TRAIN_SIZE", "DIGITS_TEST_SIZE"]

_HERE = Path(__file__).resolve().parent
DIGITS_TRAIN_SIZE, DIGITS_TEST_SIZE = 1437, 360


def digits_arrays():
    """The raw data: images (1797, 8, 8) uint8 in 0..16, labels (1797,) int64, test mask."""
    table = np.loadtxt(_HERE / "digits.csv.gz", delimiter=",", dtype=np.int64)   # (1797, 65)
    images = table[:, :64].reshape(-1, 8, 8).astype(np.uint8)
    labels = table[:, 64]
    test = np.zeros(len(labels), dtype=bool)
    test[np.loadtxt(_HERE / "digits_test_indices.txt", dtype=np.int64)] = True
    return images, labels, test


def load_digits(resolution: int | None = None, channels: int = 1,
                dtype=np.float32) -> Splits:
    """``(train, test)`` Datasets of digits as x (N, channels, R, R), y (N,) int64.

    Pixels are scaled to [0, 1] (divided by 16) and then standardised with the mean and
    standard deviation of the *training* images (one scalar each, stored in ``info``), so
    the test set is never looked at. ``resolution`` R (default 8, the native size)
    upsamples bilinearly: the same digits at the input size a network wants, which is the
    resolution multiplier of MobileNets in action. ``channels=3`` repeats the gray
    channel for networks built for RGB.
    """
    images, labels, test = digits_arrays()
    x = (images.astype(np.float64) / 16.0)[:, None]                   # (N, 1, 8, 8) in [0, 1]
    mean, std = x[~test].mean(), x[~test].std()
    x = (x - mean) / std
    if resolution is not None and resolution != 8:
        if int(resolution) < 1:
            raise ValueError(f"load_digits: resolution must be >= 1, got {resolution}")
        x = resize(x, int(resolution))
    if channels not in (1, 3):
        raise ValueError(f"load_digits: channels must be 1 or 3, got {channels}")
    x = np.repeat(x, channels, axis=1).astype(dtype)
    info = {"mean": float(mean), "std": float(std), "source": "digits.csv.gz (UCI, CC BY 4.0)"}
    classes = tuple(str(d) for d in range(10))
    make = lambda m, part: Dataset(np.ascontiguousarray(x[m]), labels[m], classes,
                                   f"digits-{part}", dict(info))
    return Splits(make(~test, "train"), make(test, "test"))
