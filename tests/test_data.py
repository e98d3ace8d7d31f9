"""The bundled digits (split, normalisation, upsampling), the shapes, batching and shifts."""

from pathlib import Path

import numpy as np
import pytest

import tinymobilenet.data as D

# the chapters these tests back (select with: pytest -m ch09)
pytestmark = [pytest.mark.ch09]



@pytest.fixture(scope="module")
def digits():
    return D.load_digits()


def test_digits_file_and_attribution_ship_inside_the_package():
    here = Path(D.__file__).parent
    assert (here / "digits.csv.gz").is_file()
    licence = (here / "LICENSE-digits.txt").read_text()
    assert "Alpaydin" in licence and "Kaynak" in licence and "CC BY 4.0" in licence


def test_digits_split_sizes_and_classes(digits):
    train, test = digits
    assert (len(train), len(test)) == (D.DIGITS_TRAIN_SIZE, D.DIGITS_TEST_SIZE) == (1437, 360)
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(test.y), [36] * 10)
    assert train.classes == tuple("0123456789")


def test_digits_split_is_disjoint_and_matches_its_documented_recipe():
    images, labels, test = D.digits_arrays()
    assert images.shape == (1797, 8, 8) and images.max() == 16
    assert test.sum() == 360
    rng = np.random.default_rng(0)             # the recipe in digits_test_indices.txt
    want = np.sort(np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:36] for c in range(10)]))
    np.testing.assert_array_equal(np.flatnonzero(test), want)


def test_digits_are_deterministic_and_standardised_on_the_training_split(digits):
    train, test = digits
    again = D.load_digits()
    np.testing.assert_array_equal(train.x, again.train.x)
    np.testing.assert_array_equal(test.y, again.test.y)
    assert abs(train.x.mean()) < 1e-5 and abs(train.x.std() - 1) < 1e-5
    assert train.info["mean"] == test.info["mean"]           # test uses the train statistics


def test_digits_upsampled_keeps_the_images(digits):
    train, _ = D.load_digits(resolution=32, channels=3)
    assert train.x.shape == (1437, 3, 32, 32)
    np.testing.assert_array_equal(train.x[:, 0], train.x[:, 2])
    # averaging 4x4 blocks of the 4x upsampled image roughly gives the original back
    down = train.x[:, :1].reshape(1437, 1, 8, 4, 8, 4).mean(axis=(3, 5))
    assert np.corrcoef(down.ravel(), digits.train.x.ravel())[0, 1] > 0.95


def test_resize_keeps_constants_and_identity():
    x = np.full((2, 3, 5, 7), 2.5)
    np.testing.assert_allclose(D.resize(x, (9, 4)), 2.5)
    y = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    np.testing.assert_allclose(D.resize(y, (5, 7)), y, atol=1e-12)


@pytest.mark.torch
def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 6))
    for size in [(32, 24), (13, 5), (4, 3)]:
        want = torch.nn.functional.interpolate(torch.tensor(x), size=size, mode="bilinear",
                                               align_corners=False).numpy()
        np.testing.assert_allclose(D.resize(x, size), want, atol=1e-12)


def test_shapes_any_resolution_balanced_and_seeded():
    a = D.make_shapes(40, resolution=13, seed=3)
    b = D.make_shapes(40, resolution=13, seed=3)
    c = D.make_shapes(40, resolution=13, seed=4)
    assert a.x.shape == (40, 1, 13, 13) and a.x.dtype == np.float32
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    np.testing.assert_array_equal(np.bincount(a.y), [10] * 4)
    assert a.classes == D.SHAPES
    assert D.make_shapes(4, resolution=64).x.shape == (4, 1, 64, 64)
    with pytest.raises(ValueError, match="resolution"):
        D.make_shapes(4, resolution=4)
    # load_shapes draws its test images apart from its training images: none repeats
    train, test = D.load_shapes(13, n_train=20, n_test=20, seed=3)
    assert not (train.x[:, None] == test.x[None]).all(axis=(2, 3, 4)).any()     # (20, 20)


def test_shapes_differ_by_class():
    # mean brightness of a disc and a thin cross of the same size differ
    s = D.make_shapes(400, resolution=24, seed=0, noise=0.0)
    means = [s.x[s.y == k].mean() for k in range(4)]
    assert means[0] > means[3]
    assert s.x.min() == 0 and s.info["noise"] == 0.0             # no noise: a clean background


def test_load_dataset_by_name():
    train, test = D.load_dataset("shapes", resolution=16, channels=3)
    assert train.x.shape[1:] == (3, 16, 16) and len(test) == 400
    np.testing.assert_array_equal(D.load_dataset("shapes", 16, seed=2).train.x,
                                  D.load_shapes(16, seed=2).train.x)
    assert D.load_dataset("digits", channels=3).test.x.shape == (360, 3, 8, 8)
    with pytest.raises(ValueError, match="digits, shapes"):
        D.load_dataset("mnist")


def test_batches_cover_everything_once_in_a_seeded_order(digits):
    train = digits.train[:100]
    order = lambda seed: np.concatenate(
        [y for _, y in D.batches(train, 32, shuffle=True, rng=np.random.default_rng(seed))])
    sizes = [len(y) for _, y in D.batches(train, 32)]
    assert sizes == [32, 32, 32, 4]
    assert [len(y) for _, y in D.batches(train[:65], 32)] == [32, 32, 1]     # one left over
    assert [len(y) for _, y in D.batches(train, 32, drop_last=True)] == [32, 32, 32]
    np.testing.assert_array_equal(order(5), order(5))
    assert not np.array_equal(order(5), order(6))
    np.testing.assert_array_equal(np.sort(order(5)), np.sort(train.y))
    with pytest.raises(ValueError, match="rng"):
        next(D.batches(train, 8, shuffle=True))


def test_random_shift_moves_a_pixel_by_at_most_the_shift():
    x = np.zeros((50, 2, 9, 9), dtype=np.float32)
    x[:, :, 4, 4] = 1.0
    y = D.random_shift(x, 2, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(y.sum(axis=(2, 3)), 1.0)      # moved, not lost
    rows, cols = np.nonzero(y[:, 0])[1:]
    # every shift from -2 to 2 occurs along each axis (each misses 50 draws with p < 1e-4)
    assert set(rows - 4) == set(cols - 4) == set(range(-2, 3))
    np.testing.assert_array_equal(y[:, 0], y[:, 1])             # same shift for all channels
    # uncovered pixels take each image's own background (its minimum), not 0
    background = np.linspace(-1, 0, 50, dtype=np.float32)[:, None, None, None]
    np.testing.assert_array_equal(D.random_shift(x + background, 2, np.random.default_rng(0)),
                                  y + background)
    assert D.random_shift(x, 0, np.random.default_rng(0)) is x


def test_dataset_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N, C, H, W"):
        D.Dataset(np.zeros((3, 8, 8)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"y \(N,\)"):                  # a label per image
        D.Dataset(np.zeros((3, 1, 8, 8)), np.zeros(2, dtype=np.int64))


# --- image files --------------------------------------------------------------------------

def test_load_image_rgb_gray_and_errors_name_the_file(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    np.testing.assert_array_equal(D.load_image(tmp_path / "a.png"), pixels)   # lossless
    gray = D.load_image(tmp_path / "a.png", mode="L")
    assert gray.shape == (5, 7) and gray.dtype == np.uint8
    chw = D.to_chw(pixels)
    assert chw.shape == (3, 5, 7) and chw.dtype == np.float32
    np.testing.assert_allclose(chw[1], pixels[:, :, 1] / 255, rtol=1e-6)
    np.testing.assert_allclose(D.to_chw(gray)[0], gray / 255, rtol=1e-6)      # (H, W) -> (1, H, W)
    # a truncated file, a text file and a missing file each raise one error naming the file
    Image.fromarray(pixels).resize((64, 64)).save(tmp_path / "b.jpg")
    raw = (tmp_path / "b.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.jpg", "text.png", "missing.png"):
        with pytest.raises(D.ImageError, match=name):
            D.load_image(tmp_path / name)


@pytest.mark.parametrize("orientation, quarter_turns", [(3, 2), (6, -1), (8, 1)])
def test_load_image_turns_the_pixels_upright_by_their_exif_orientation(tmp_path, orientation,
                                                                       quarter_turns):
    """A camera stores the sensor's pixels and, in the EXIF Orientation tag, the turn that
    shows them upright (the EXIF specification: 3 half a turn, 6 a quarter turn clockwise,
    8 counter-clockwise; np.rot90 turns counter-clockwise): the pixels come out upright,
    as a viewer shows them, not as stored."""
    from PIL import Image
    pixels = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation                                   # the Orientation tag
    Image.fromarray(pixels).save(tmp_path / "camera.png", exif=exif)
    np.testing.assert_array_equal(D.load_image(tmp_path / "camera.png"),
                                  np.rot90(pixels, quarter_turns))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_load_image_shows_transparent_pixels_on_white(tmp_path, mode):
    """Transparency (an alpha channel, or a palette's transparent entry) comes out on a
    white background, as a viewer shows it: a * colour + (1 - a) * 255 per pixel, to a
    level of rounding; opaque pixels keep their colour. Loaded as gray, or given to a
    transform as a PIL image, it is the same picture."""
    from PIL import Image
    rgb = np.array([[[200, 10, 50], [200, 10, 50], [0, 120, 255], [30, 60, 90]]], np.uint8)
    alpha = np.array([[255, 0, 128, 64]], np.uint8)                         # (1, 4)
    if mode == "LA":
        rgb = np.repeat(rgb[..., 1:2], 3, axis=-1)                          # gray
    if mode == "P":
        alpha = np.array([[255, 0, 255, 255]], np.uint8)     # a palette entry is on or off
        image = Image.new("P", (4, 1))
        image.putpalette(rgb.ravel().tolist())                # pixel i: palette entry i
        image.putdata(range(4))
        image.save(tmp_path / "image.png", transparency=1)
    else:
        channels = rgb if mode == "RGBA" else rgb[..., :1]
        Image.fromarray(np.dstack([channels, alpha]), mode).save(tmp_path / "image.png")
    a = alpha[..., None] / 255
    got = D.load_image(tmp_path / "image.png")
    assert got.shape == (1, 4, 3) and got.dtype == np.uint8
    np.testing.assert_allclose(got, a * rgb + (1 - a) * 255, atol=1)
    np.testing.assert_array_equal(D.load_image(tmp_path / "image.png", "L"),
                                  np.asarray(Image.fromarray(got).convert("L")))
    t = D.imagenet_transform(8, 4)
    with Image.open(tmp_path / "image.png") as im:
        np.testing.assert_array_equal(t(im), t(tmp_path / "image.png"))


def test_big_endian_16_bit_gray_is_scaled_like_little_endian(tmp_path):
    """Pillow reads a big-endian 16-bit gray TIFF as mode "I;16B": scaled to 8 bits like
    the little-endian file (round(v / 257)), not clipped to white."""
    from PIL import Image
    v = np.array([[0, 257, 65535, 30000, 200]], np.uint16)
    Image.fromarray(v.astype(">u2")).save(tmp_path / "big.tiff")
    with Image.open(tmp_path / "big.tiff") as im:
        assert im.mode == "I;16B"
    np.testing.assert_array_equal(D.load_image(tmp_path / "big.tiff", "L"),
                                  np.round(v / 257).astype(np.uint8))
