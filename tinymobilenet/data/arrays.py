"""Image arrays, mini-batches, resizing and augmentation shared by every data set.

Images are NCHW float32: x (N, C, H, W), labels y (N,) int64. Feature vectors (the input of
the 1-D models) are x (N, D).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np

__all__ = ["Dataset", "Splits", "batches", "resize", "random_shift"]


@dataclass
class Dataset:
    """Images ``x`` (N, C, H, W) (or feature vectors (N, D)) float32 and labels ``y`` (N,)
    int64 with class names.

    ``data[idx]`` (an index array, mask or slice) is a Dataset of those images;
    ``data.flatten()`` the same samples as vectors (N, C*H*W).
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple = ()
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.x.ndim not in (2, 4) or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"Dataset: expected x (N, C, H, W) or (N, D) and y (N,), got "
                             f"{self.x.shape} and {self.y.shape}")

    def __len__(self):
        return len(self.y)

    def __getitem__(self, idx) -> "Dataset":
        return Dataset(self.x[idx], self.y[idx], self.classes, self.name, dict(self.info))

    @property
    def shape(self):
        """(C, H, W) of one image, (D,) of one vector."""
        return self.x.shape[1:]

    def flatten(self) -> "Dataset":
        """The same samples as feature vectors x (N, C*H*W), pixel order C, H, W."""
        return Dataset(self.x.reshape(len(self.x), -1), self.y, self.classes, self.name,
                       dict(self.info))

    def __repr__(self):
        return (f"Dataset({self.name!r}, {len(self)} images of {self.x.shape[1:]}, "
                f"{len(self.classes)} classes)")


class Splits(NamedTuple):
    """A training and a test :class:`Dataset`: ``train, test = load_digits()``."""
    train: Dataset
    test: Dataset


def batches(data: Dataset, batch_size: int, shuffle: bool = False,
            rng: np.random.Generator | None = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield mini-batches ``(x (B, C, H, W) or (B, D), y (B,))`` covering ``data`` once.

    With ``shuffle`` the order is ``rng.permutation(N)``: the same generator state gives
    the same batches. The last batch is smaller unless ``drop_last``. ``ValueError`` for
    batch_size < 1 or ``shuffle`` without ``rng``.
    """
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    n = len(data)
    if shuffle:
        if rng is None:
            raise ValueError("batches: shuffle=True needs a seeded rng")
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield data.x[idx], data.y[idx]


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D linear interpolation with half-pixel centres.

    Output pixel o samples the input at s = (o + 0.5) * n_in / n_out - 0.5 (clamped to
    [0, n_in - 1]) and mixes its two neighbours, as ``torch.nn.functional.interpolate(
    mode="bilinear", align_corners=False)`` does.
    """
    s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(s).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = s - i0
    A = np.zeros((n_out, n_in))
    np.add.at(A, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(A, (np.arange(n_out), i1), w1)
    return A


def resize(x: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of images x (N, C, H, W) to (N, C, Ho, Wo), ``size`` = Ho or (Ho, Wo).

    Bilinear interpolation is separable: a matrix along H times the images times a matrix
    along W, ``A_h (Ho, H) @ x (N, C, H, W) @ A_w.T (W, Wo)``.
    """
    Ho, Wo = (size, size) if np.isscalar(size) else size
    if Ho < 1 or Wo < 1:
        raise ValueError(f"resize: size must be >= 1, got {size}")
    H, W = x.shape[-2:]
    A_h = _interpolation_matrix(H, Ho).astype(x.dtype)
    A_w = _interpolation_matrix(W, Wo).astype(x.dtype)
    return A_h @ x @ A_w.T                              # (N, C, Ho, Wo)


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels along H and W (drawn uniformly).

    x: (N, C, H, W) -> same shape. Uncovered pixels take the image's minimum, its
    background. A few pixels of shift teach a network that a digit is the same digit
    wherever it sits; the convolutions are translation-equivariant, the classifier is not.
    """
    if max_shift <= 0:
        return x
    N, C, H, W = x.shape
    s = int(max_shift)
    shifts = rng.integers(-s, s + 1, size=(N, 2))
    fill = x.min(axis=(1, 2, 3), keepdims=True)                       # (N, 1, 1, 1)
    padded = np.broadcast_to(fill, (N, C, H + 2 * s, W + 2 * s)).copy()
    padded[:, :, s:s + H, s:s + W] = x
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(shifts):             # image i moves by (dy, dx)
        out[i] = padded[i, :, s - dy:s - dy + H, s - dx:s - dx + W]
    return out
