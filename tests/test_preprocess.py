"""ImageNet preprocessing (data/preprocess.py) and the class names: shapes and dtypes,
values derived by hand on synthetic images, file round trips, and (optional) equality
with torchvision's own ``weights.transforms()``."""

import numpy as np
import pytest
from PIL import Image

from tinymobilenet import data

# the chapters these tests back (select with: pytest -m ch10)
pytestmark = [pytest.mark.ch10]


# torchvision 0.29.1's weights metadata (transforms() of each entry), as the reference
# table pretrained_weights.json lists it
ENTRIES = {
    "mobilenet_v2.IMAGENET1K_V1": dict(resize=256, crop=224, interpolation="bilinear"),
    "mobilenet_v2.IMAGENET1K_V2": dict(resize=232, crop=224, interpolation="bilinear"),
    "mobilenet_v3_large.IMAGENET1K_V2": dict(resize=232, crop=224, interpolation="bilinear"),
    "efficientnet_b0.IMAGENET1K_V1": dict(resize=256, crop=224, interpolation="bicubic"),
    "efficientnet_b1.IMAGENET1K_V2": dict(resize=255, crop=240, interpolation="bilinear"),
    "efficientnet_b2.IMAGENET1K_V1": dict(resize=288, crop=288, interpolation="bicubic"),
}
for e in ENTRIES.values():
    e.update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def position_image(W, H):
    """uint8 (H, W, 3) whose red channel is the column and green the row (mod 256): a
    crop's first pixel tells where the crop starts."""
    cols, rows = np.meshgrid(np.arange(W), np.arange(H))
    return np.stack([cols % 256, rows % 256, np.full_like(cols, 7)], axis=-1).astype(np.uint8)


def smooth_photo(W=333, H=250, seed=0, texture=0.3):
    """A photo-like RGB image: smooth random colour fields plus a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    img = np.zeros((H, W, 3))
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(1, 6, 2).tolist() + [rng.uniform(0, 6)]
            img[..., c] += np.sin(2 * np.pi * (fx * x + fy * y) + ph)
    img += texture * rng.standard_normal(img.shape)
    img = (img - img.min()) / (img.max() - img.min())
    return (255 * img).astype(np.uint8)


def test_output_shape_dtype_and_batch():
    img = smooth_photo()
    for t, S in [(data.imagenet_transform(), 224), (data.imagenet_transform(232, 200), 200),
                 (data.lite_transform(), 224), (data.lite_transform(280), 280)]:
        x = t(img)
        assert x.shape == (3, S, S) and x.dtype == np.float32 and x.flags.c_contiguous
        b = t.batch([img, Image.fromarray(img), smooth_photo(seed=1)])
        assert b.shape == (3, 3, S, S) and b.dtype == np.float32
        # array and PIL image: the same pixels, and batch() runs each image through the
        # very call that gave x: the same computation repeated, bit for bit
        np.testing.assert_array_equal(b[0], x)
        np.testing.assert_array_equal(b[1], x)
        assert not np.array_equal(b[2], x)


def test_constant_image_gives_the_normalised_colour():
    """A flat colour survives any resize and crop: the output is exactly
    (c / 255 - mean) / std per channel (torchvision), (c - 127) / 128 (Lite)."""
    rgb = np.array([200, 30, 127], dtype=np.uint8)
    img = np.broadcast_to(rgb, (301, 257, 3)).copy()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for interp in ("bilinear", "bicubic"):
        x = data.imagenet_transform(256, 224, interp)(img)
        expected = ((rgb / 255 - mean) / std).reshape(3, 1, 1)
        np.testing.assert_allclose(x, np.broadcast_to(expected, x.shape), rtol=1e-6, atol=1e-6)
    x = data.lite_transform()(img)
    np.testing.assert_array_equal(x, np.broadcast_to(((rgb - 127.0) / 128).reshape(3, 1, 1),
                                                     x.shape).astype(np.float32))
    # the Lite pixel range: 0 -> -127/128, 255 -> 1
    assert data.lite_transform()(np.zeros((40, 40, 3), np.uint8)).min() == np.float32(-127 / 128)
    assert data.lite_transform()(np.full((40, 40, 3), 255, np.uint8)).max() == 1.0


def test_center_crop_offsets_follow_torchvision_rounding():
    """No resize needed (the shorter side is already 256): the crop starts at
    int(round((H - 224) / 2)), Python's round, so an odd 77-pixel margin splits 38 + 39
    and a 75-pixel one 38 + 37 (half to even: not the floor)."""
    for W, H in [(300, 256), (301, 256), (299, 256), (256, 333)]:
        x = data.imagenet_transform(256, 224, mean=(0, 0, 0), std=(1, 1, 1))(position_image(W, H))
        top, left = int(round((H - 224) / 2.0)), int(round((W - 224) / 2.0))
        assert (round(float(x[1, 0, 0]) * 255), round(float(x[0, 0, 0]) * 255)) == (top, left)
        assert round(float(x[0, 0, 223]) * 255) == (left + 223) % 256     # no resampling
    assert int(round(77 / 2.0)) == 38                                    # banker's rounding


def test_shorter_side_resize_truncates_the_long_side():
    from tinymobilenet.data.preprocess import resize_shorter
    for (W, H), size in [((333, 200), 256), ((200, 333), 256), ((640, 427), 232), ((500, 500), 224)]:
        out = resize_shorter(Image.new("RGB", (W, H)), size, "bilinear")
        short, long = min(W, H), max(W, H)
        new_long = int(size * long / short)               # torchvision: truncated, not rounded
        assert out.size == ((size, new_long) if W <= H else (new_long, size))
    assert resize_shorter(Image.new("RGB", (333, 200)), 256, "bilinear").size == (426, 256)


def test_crop_smaller_than_image_is_zero_padded_like_torchvision():
    from tinymobilenet.data.preprocess import center_crop
    im = center_crop(Image.fromarray(np.full((5, 6, 3), 9, np.uint8)), 8)
    a = np.asarray(im)[..., 0]
    # rows: 3 missing -> 1 above, 2 below; columns: 2 missing -> 1 each side
    assert a.shape == (8, 8) and (a[1:6, 1:7] == 9).all() and a.sum() == 9 * 30
    # only the height too small: padded the same way, the width cropped as usual
    pos = position_image(10, 5)
    a = np.asarray(center_crop(Image.fromarray(pos), 8))
    left = int(round((10 - 8) / 2.0))
    np.testing.assert_array_equal(a[1:6], pos[:, left:left + 8])
    assert not a[0].any() and not a[6:].any()


def test_lite_crop_box_is_tensorflows():
    """TensorFlow crops the central int(224 / 256 * min(H, W)) square at offsets
    ((H - side) + 1) // 2 and ((W - side) + 1) // 2, then resizes it to 224."""
    t = data.lite_transform(224)
    assert t.crop_padding == 32
    for W, H in [(600, 512), (333, 250), (250, 333), (224, 224)]:
        side = int(224 / 256 * min(W, H))
        assert t.crop_box(W, H) == (((W - side) + 1) // 2, ((H - side) + 1) // 2, side)
    # the other variants: TensorFlow's crop_padding = round(size * (1 / 0.875 - 1))
    assert [data.lite_transform(s).crop_padding for s in (240, 260, 280, 300)] == [34, 37, 40, 43]
    # where the crop starts, read off a position image resized to itself (side == size)
    x = data.lite_transform(224)(position_image(300, 256))       # side 224, offsets 38, 16
    assert t.crop_box(300, 256) == (38, 16, 224)
    assert round(float(x[0, 0, 0]) * 128 + 127) == 38 and round(float(x[1, 0, 0]) * 128 + 127) == 16


def test_default_recipes_are_the_documented_pipelines():
    """imagenet_transform() is torchvision's classic recipe (shorter side to 256 bilinear,
    central 224, ImageNet statistics), and lite_transform(S) crops crop_box and resizes
    the square bicubic before (x - 127) / 128: the same steps spelled out with Pillow."""
    img = smooth_photo()                                              # 333 x 250
    default = data.imagenet_transform()(img)
    np.testing.assert_array_equal(default, data.imagenet_transform(
        256, 224, "bilinear", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(img))
    np.testing.assert_array_equal(default, data.ImageNetTransform()(img))     # the class too
    assert not np.array_equal(default, data.imagenet_transform(interpolation="bicubic")(img))
    t = data.lite_transform(64)
    left, top, side = t.crop_box(333, 250)
    square = Image.fromarray(img).crop((left, top, left + side, top + side))
    pixels = np.asarray(square.resize((64, 64), Image.Resampling.BICUBIC), np.float32)
    np.testing.assert_allclose(t(img), (pixels.transpose(2, 0, 1) - 127) / 128, rtol=0,
                               atol=1e-6)


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_file_round_trip(tmp_path, ext):
    img = smooth_photo(texture=0.0)         # JPEG keeps smooth images nearly intact
    path = tmp_path / f"photo.{ext}"
    Image.fromarray(img).save(path, quality=95) if ext == "jpg" else Image.fromarray(img).save(path)
    for t in (data.imagenet_transform(), data.lite_transform()):
        from_path = t(path)
        np.testing.assert_array_equal(from_path, t(data.load_image(path)))   # same decode
        np.testing.assert_array_equal(from_path, t(str(path)))
        if ext == "png":                                                 # lossless
            np.testing.assert_array_equal(from_path, t(img))
        else:         # JPEG at quality 95: on average under a level of 255 (0.017 / 0.226)
            assert np.abs(from_path - t(img)).mean() < 0.017
    with pytest.raises(data.ImageError, match="missing.png"):
        data.imagenet_transform()(tmp_path / "missing.png")


def test_weights_entries_and_errors():
    t = data.transform_for_weights({"model": "efficientnet_b0", **ENTRIES["efficientnet_b0.IMAGENET1K_V1"]})
    assert (t.resize, t.crop, t.interpolation) == (256, 224, "bicubic")
    assert "interpolation='bicubic'" in repr(t) and "0.485" in repr(t)
    lite = data.transform_for_weights({"recipe": "lite", "crop": 224})
    assert isinstance(lite, data.LiteTransform) and lite.size == 224
    assert data.transform_for_weights({"recipe": "lite", "crop": 280}).size == 280
    with pytest.raises(KeyError, match="'interpolation'"):
        data.transform_for_weights({"resize": 256, "crop": 224, "mean": [0] * 3, "std": [1] * 3})
    with pytest.raises(ValueError, match="interpolation must be one of"):
        data.imagenet_transform(interpolation="cubic")
    with pytest.raises(ValueError, match="crop must be an integer"):
        data.imagenet_transform(crop=0)
    with pytest.raises(ValueError, match="uint8"):
        data.imagenet_transform()(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):          # RGBA: its alpha would be lost
        data.imagenet_transform()(np.zeros((8, 8, 4), np.uint8))
    # one error naming mean and std for each bad one (not a failed reshape, not NaN out)
    three = (0.5, 0.5, 0.5)
    for mean, std in [(three, (0.2, 0.0, 0.2)), ((0.5,), three), (0.5, three),
                      (three, (0.2, 0.2)), ((0.5, float("nan"), 0.5), three)]:
        with pytest.raises(ValueError, match="mean and std must be 3 numbers"):
            data.imagenet_transform(mean=mean, std=std)
    with pytest.raises(TypeError, match="image file path"):
        data.lite_transform()(42)


def test_imagenet_classes():
    classes = data.IMAGENET_CLASSES
    assert isinstance(classes, tuple) and len(classes) == 1000
    assert all(isinstance(c, str) and c and c == c.strip() for c in classes)
    assert classes[0] == "tench" and classes[652] == "military uniform"
    assert classes[999] == "toilet tissue"


@pytest.mark.torch
@pytest.mark.parametrize("key", list(ENTRIES))
def test_matches_torchvision_weights_transforms(key):
    """The same PIL image through torchvision's own ``weights.transforms()`` (which our
    entries must also describe) and ours: the same float32 arithmetic on the same Pillow
    pixels, so equal to ~1e-6 (measured: bit-equal)."""
    tvm = pytest.importorskip("torchvision.models")
    model, name = key.split(".")
    weights = tvm.get_model_weights(model)[name]
    ref_t = weights.transforms()
    entry = ENTRIES[key]
    assert (ref_t.resize_size, ref_t.crop_size) == ([entry["resize"]], [entry["crop"]])
    assert ref_t.interpolation.value == entry["interpolation"]
    assert list(ref_t.mean) == entry["mean"] and list(ref_t.std) == entry["std"]
    ours = data.transform_for_weights(entry)
    import matplotlib.cbook
    photos = [Image.fromarray(smooth_photo()), Image.fromarray(smooth_photo(250, 333, seed=2)),
              Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    for im in photos:
        im = im.convert("RGB")
        np.testing.assert_allclose(ours(im), ref_t(im).numpy(), rtol=0, atol=1e-6)
    assert weights.meta["categories"] == list(data.IMAGENET_CLASSES)
