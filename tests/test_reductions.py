"""Row sums and dot products in BLAS (functional.reductions) against NumPy's reductions."""

import numpy as np
import pytest

from tinymobilenet.functional import reductions as R


@pytest.mark.parametrize("L", [1, 9, 36, R.SHORT_ROW - 1, R.SHORT_ROW, 2304])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sums_and_dots_match_numpy_on_strided_views(L, dtype):
    rng = np.random.default_rng(L)
    # rows of a channel tile as batch norm reads them: (N, ct, L) views of (N, C, L)
    a = rng.standard_normal((3, 7, L)).astype(dtype)[:, 2:6]
    b = rng.standard_normal((3, 7, L)).astype(dtype)[:, 2:6]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    sums, dots = R.row_sums(a), R.row_dots(a, b)
    assert sums.shape == dots.shape == (3, 4) and sums.dtype == dots.dtype == dtype
    np.testing.assert_allclose(sums, a.astype(np.float64).sum(-1), rtol=tol, atol=tol * np.sqrt(L))
    np.testing.assert_allclose(dots, (a.astype(np.float64) * b).sum(-1), rtol=tol,
                               atol=tol * np.sqrt(L))


def test_ones_is_shared_and_read_only():
    v = R.ones(5, np.float32)
    assert v is R.ones(5, np.float32) and v.dtype == np.float32 and (v == 1).all()
    with pytest.raises(ValueError, match="read-only"):
        v[0] = 2
