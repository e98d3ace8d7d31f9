"""A procedural image set of any size: circles, squares, triangles and crosses.

Every image is drawn from its own seed, so ``make_shapes(n, resolution, seed)`` gives the
same images on every machine, at any resolution, with no download. Each shape has a random
centre, size, rotation and brightness on a dark background with a little Gaussian noise.
"""

from __future__ import annotations

import numpy as np

from .arrays import Dataset, Splits

__all__ = ["SHAPES", "make_shapes", "load_shapes"]

SHAPES = ("circle", "square", "triangle", "cross")


def _masks(label, u, v, size):
    """Inside-ness (bool) of ``SHAPES[label]`` at rotated, centred coordinates u, v."""
    if label == 0:                                         # disc of radius `size`
        return u * u + v * v <= size * size
    if label == 1:                                         # square of half-side 0.8 size
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * size
    if label == 2:                                         # equilateral triangle
        edges = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3,
                                                  np.pi / 2 + 4 * np.pi / 3)]
        return np.all([u * cu + v * cv <= 0.5 * size for cu, cv in edges], axis=0)
    bar = 0.3 * size                                       # plus sign of two bars
    return ((np.abs(u) <= bar) & (np.abs(v) <= size)) | ((np.abs(v) <= bar) & (np.abs(u) <= size))


def make_shapes(n: int, resolution: int = 32, seed: int = 0, noise: float = 0.05,
                dtype=np.float32) -> Dataset:
    """``n`` images x (n, 1, R, R) and labels y (n,) in 0..3 (``SHAPES``), classes balanced.

    Pixels are roughly in [0, 1]; shapes are drawn on a 2x finer grid and averaged down,
    so edges are anti-aliased at any resolution R >= 8.
    """
    if resolution < 8:
        raise ValueError(f"make_shapes: resolution must be >= 8, got {resolution}")
    rng = np.random.default_rng(seed)
    R, S = int(resolution), 2 * int(resolution)
    labels = np.arange(n) % len(SHAPES)
    rng.shuffle(labels)
    grid = (np.arange(S) + 0.5) / S                        # pixel centres in [0, 1]
    yy, xx = np.meshgrid(grid, grid, indexing="ij")        # (S, S)
    x = np.empty((n, 1, R, R), dtype=np.float64)
    for i, label in enumerate(labels):
        size = rng.uniform(0.18, 0.32)
        cy, cx = rng.uniform(size + 0.02, 0.98 - size, size=2)
        angle = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        u = c * (xx - cx) + s * (yy - cy)                  # rotate into the shape's frame
        v = -s * (xx - cx) + c * (yy - cy)
        fine = _masks(label, u, v, size) * rng.uniform(0.6, 1.0)
        x[i, 0] = fine.reshape(R, 2, R, 2).mean(axis=(1, 3))       # 2x2 average: anti-alias
    x += noise * rng.standard_normal(x.shape)
    return Dataset(x.astype(dtype), labels.astype(np.int64), SHAPES, "shapes",
                   {"resolution": R, "seed": seed, "noise": noise})


def load_shapes(resolution: int = 32, n_train: int = 1200, n_test: int = 400,
                seed: int = 0) -> Splits:
    """``(train, test)`` shapes drawn from independent seeds (``seed`` and ``seed + 1``):
    x (n, 1, R, R) float32, y (n,) int64 in 0..3, n = ``n_train`` / ``n_test`` (see
    :func:`make_shapes`)."""
    return Splits(make_shapes(n_train, resolution, seed),
                  make_shapes(n_test, resolution, seed + 1))
