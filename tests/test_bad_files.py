"""Files from outside are untrusted: a bad image, checkpoint, weights file or JSON file gets
one error naming the file and what is wrong (a command: one line on stderr, exit status 2),
never a traceback and never a silently wrong result. Every bad file is made here."""

import io
import json
import zipfile

import numpy as np
import pytest

from tinymobilenet import count, evaluate, figures, models, predict, train, train_benchmark
from tinymobilenet.data import ImageError, ImageTransform, load_image
from tinymobilenet.files import FileError, atomic_write, read_json
from tinymobilenet.models import CheckpointFormatError
from tinymobilenet.train import CheckpointError, read_checkpoint

from conftest import draw_image

CLASSES = [str(d) for d in range(10)]


def one_line_error(capsys, main, argv, *needles):
    """Run a command's main: exit status 2, one line on stderr holding every needle."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---- a small checkpoint, as the trainer writes it (no training: a second is plenty) -------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A checkpoint of MobileNetV1 (alpha 0.25) for the 8x8 digits, written by
    save_checkpoint with the configuration the trainer stores."""
    from tinymobilenet.optim import SGD
    out = tmp_path_factory.mktemp("good")
    model = models.mobilenet_v1(alpha=0.25, num_classes=10, in_channels=1, dropout=0.1)
    config = {**train.recipe("mobilenet_v1"), "resolution": 8, "precise_bn": 64, "dropout": 0.1,
              "out": str(out), "model_options": {"num_classes": 10, "seed": 0,
                                                 "alpha": 0.25, "in_channels": 1,
                                                 "dropout": 0.1},
              "input_shape": [1, 8, 8], "classes": CLASSES,
              "transform": ImageTransform("L", 8, 0.3, 0.37, resample="box").to_dict()}
    history = [{"epoch": 1, "lr": 0.05, "train_loss": 2.0, "train_accuracy": 0.3,
                "seconds": 0.5, "test_loss": 1.9, "test_accuracy": 0.35}]
    path = out / "checkpoint.npz"
    train.save_checkpoint(path, model, SGD(model.parameters(), lr=0.05, momentum=0.9), 1,
                          history, config)
    return path


def variant(good, tmp_path, name, edit=None, arrays=None):
    """A copy of the good checkpoint with its meta data changed by ``edit(meta)`` (which
    may return a replacement) and its arrays by ``arrays(dict)``."""
    with np.load(good) as f:
        a = {k: f[k] for k in f.files}
    meta = json.loads(str(a["meta"]))
    if edit is not None:
        meta = edit(meta) or meta
    if arrays is not None:
        arrays(a)
    a["meta"] = np.array(json.dumps(meta) if not isinstance(meta, str) else meta)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **a)
    return path


def gray_png(tmp_path, name="gray.png"):
    path = tmp_path / name
    draw_image(1, seed=0, size=(8, 8)).save(path)
    return path


def setc(key, value):
    return lambda m: m["config"].__setitem__(key, value)


def seto(key, value):
    return lambda m: m["config"]["model_options"].__setitem__(key, value)


def sett(key, value):
    return lambda m: m["config"]["transform"].__setitem__(key, value)


# (name, edit of the meta data, what the error must name)
BAD_META = [
    ("alpha_str", seto("alpha", "x"), "config.model_options.alpha"),
    ("alpha_neg", seto("alpha", -1), "alpha must be > 0"),
    ("opt_unknown", seto("foo", 1), "config.model_options.foo"),
    # a model with published weights: a checkpoint never makes the library read another file
    ("opt_weights", lambda m: m["config"].update(model="mobilenet_v2", model_options={
        "weights": "weights.npz"}), "model_options.weights: mobilenet_v2 has no such option"),
    ("model_unknown", setc("model", "resnet50"), "config.model"),
    ("config_list", lambda m: m.__setitem__("config", []), "config"),
    ("config_null", lambda m: m.__setitem__("config", None), "config"),
    ("shape_str", setc("input_shape", "abc"), "config.input_shape"),
    ("classes_null", setc("classes", None), "config.classes"),
    ("classes_short", setc("classes", ["a"]), "config.classes"),
    ("transform_null", setc("transform", None), "config.transform"),
    ("transform_size0", sett("size", 0), "config.transform: size"),
    ("transform_mode", sett("mode", "P"), "config.transform: mode"),
    ("transform_std0", sett("std", [0.0]), "config.transform: std must be > 0"),
    ("transform_std_nan", sett("std", [float("nan")]), "config.transform: std"),
    ("transform_mean_empty", sett("mean", []), "config.transform: mean"),
    ("rng_list", lambda m: m.__setitem__("rng_states", []), "rng_states"),
    ("rng_bad", lambda m: m.__setitem__("rng_states", {"classifier.0": {
        "bit_generator": "PCG64", "state": 5}}), "rng_states.classifier.0"),
    ("rng_unknown", lambda m: m["rng_states"].__setitem__(
        "features.99", m["rng_states"]["classifier.0"]), "features.99"),
    ("format_other", lambda m: m.__setitem__("format", "tinymobilenet-checkpoint-0"),
     "format 'tinymobilenet-checkpoint-0'"),
    ("optim_missing", lambda m: m.__delitem__("optimizer"), "lacks optimizer"),
    ("epoch_str", lambda m: m.__setitem__("epoch", "x"), "epoch"),
    ("hist_bad", lambda m: m.__setitem__("history", "x"), "history"),
    ("optim_bad", lambda m: m.__setitem__("optimizer", {"num_params": "x"}),
     "optimizer.num_params"),
    ("lr_str", setc("lr", "fast"), "config.lr"),
    ("batch_zero", setc("batch_size", 0), "config.batch_size"),
    ("deep", lambda m: "[" * 100000, "nested too deeply"),
]


def test_a_checkpoint_that_lacks_a_model_option_still_resumes(good, tmp_path, capsys):
    """A checkpoint from a version that stored fewer model options (here no dropout) is not
    a bad file: the missing option takes the value the training options give."""
    def older(meta):
        del meta["config"]["model_options"]["dropout"]
    path = variant(good, tmp_path, "older", older)
    status = train.main(["--resume", str(path), "--epochs", "2", "--out", str(tmp_path / "r"),
                         "--progress", "none"])
    assert status == 0, capsys.readouterr().err
    assert train.read_checkpoint(tmp_path / "r" / "checkpoint.npz")[0]["epoch"] == 2


def test_a_loss_that_blew_up_is_a_fair_history_entry(good, tmp_path):
    """The history is a record, never computed with: a NaN or inf loss of an epoch (a run
    that blew up, then recovered) does not make the checkpoint unreadable."""
    def blown(meta):
        meta["history"][0]["train_loss"] = float("nan")
        meta["history"][0]["train_accuracy"] = float("inf")
    path = variant(good, tmp_path, "blown", blown)
    meta, _ = train.read_checkpoint(path)
    assert np.isnan(meta["history"][0]["train_loss"])
    train.load_model(path)


@pytest.mark.parametrize("name, edit, field", BAD_META, ids=[c[0] for c in BAD_META])
def test_read_checkpoint_names_the_file_and_the_field(good, tmp_path, name, edit, field):
    path = variant(good, tmp_path, name, edit)
    with pytest.raises(CheckpointError) as e:
        train.load_model(path)
    assert str(path) in str(e.value) and field in str(e.value)


@pytest.mark.parametrize("name, edit, field", BAD_META, ids=[c[0] for c in BAD_META])
def test_commands_print_one_line_for_bad_checkpoint_meta(good, tmp_path, capsys, name, edit,
                                                         field):
    path = variant(good, tmp_path, name, edit)
    image = str(gray_png(tmp_path))
    one_line_error(capsys, predict.main, [image, "--checkpoint", str(path)], str(path), field)
    one_line_error(capsys, evaluate.main, ["--checkpoint", str(path), "--out",
                                           str(tmp_path / "c.png")], str(path), field)
    # the trainer derives the model's options from its training options and compares
    resumed = "config.model_options" if name == "alpha_neg" else field
    one_line_error(capsys, train.main, ["--resume", str(path), "--out", str(tmp_path / "r"),
                                        "--progress", "none"], str(path), resumed)
    if name not in ("classes_null", "classes_short", "rng_list", "rng_bad", "rng_unknown",
                    "hist_bad",
                    "epoch_str", "optim_bad", "lr_str", "batch_zero") \
            and not name.startswith("transform"):
        one_line_error(capsys, count.main, ["--checkpoint", str(path)], str(path), field)


def test_the_good_checkpoint_works_everywhere(good, tmp_path, capsys):
    assert predict.main([str(gray_png(tmp_path)), "--checkpoint", str(good)]) == 0
    assert count.main(["--checkpoint", str(good)]) == 0
    assert "%" in capsys.readouterr().out


def test_nan_weights_are_refused_not_predicted_as_nan_percent(good, tmp_path, capsys):
    def nan(a):
        a["model/classifier.1.weight"] = np.full_like(a["model/classifier.1.weight"], np.nan)
    path = variant(good, tmp_path, "nan", arrays=nan)
    err = one_line_error(capsys, predict.main, [str(gray_png(tmp_path)), "--checkpoint",
                                                str(path)], str(path), "classifier.1.weight")
    assert "NaN" in err and "diverged" in err
    with pytest.raises(CheckpointFormatError, match="NaN"):
        models.load_weights(models.mobilenet_v1(alpha=0.25, num_classes=10, in_channels=1),
                            path)


def test_a_model_too_big_for_memory_is_refused_before_it_is_built(good, tmp_path, capsys):
    path = variant(good, tmp_path, "huge", seto("alpha", 1e4))
    one_line_error(capsys, predict.main, [str(gray_png(tmp_path)), "--checkpoint", str(path)],
                   str(path), "needs about")
    one_line_error(capsys, count.main, ["--checkpoint", str(path)], str(path), "needs about")


def test_a_checkpoint_never_unpickles_what_it_holds(good, tmp_path):
    """An object array in a checkpoint runs code when unpickled: refused unread, in one
    error naming the file and the entry."""
    import os
    from test_pth import Reduce                 # what an attacker pickles
    pwned = tmp_path / "pwned"
    path = variant(good, tmp_path, "objects", arrays=lambda a: a.__setitem__(
        "model/classifier.1.bias", np.array([Reduce(os.system, f"touch {pwned}")], object)))
    with pytest.raises(CheckpointError, match=rf"^{path}: .*'model/classifier.1.bias' holds "
                                              r"pickled Python objects"):
        train.load_model(path)
    assert not pwned.exists()


def test_a_bad_rng_state_of_the_right_shape_names_the_file(good, tmp_path):
    path = variant(good, tmp_path, "rng", lambda m: m["rng_states"].__setitem__(
        "classifier.0", {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}))
    with pytest.raises(CheckpointError, match="rng_states.classifier.0"):
        train.load_model(path)


def test_a_directory_is_not_reported_as_missing(good, tmp_path, capsys):
    (tmp_path / "dir.npz").mkdir()
    one_line_error(capsys, predict.main, [str(tmp_path), "--checkpoint", str(good)],
                   "is a directory, not an image file")
    one_line_error(capsys, predict.main, [str(gray_png(tmp_path)), "--checkpoint",
                                          str(tmp_path / "dir.npz")], "is a directory")
    one_line_error(capsys, predict.main, [str(gray_png(tmp_path)), "--model", "mobilenet_v1",
                                          "--weights", str(tmp_path / "dir.npz")],
                   "dir.npz: is a directory, not a weights file")
    with pytest.raises(IsADirectoryError, match="dir.npz"):
        models.read_state_dict(tmp_path / "dir.npz")


# ---- weights files ------------------------------------------------------------------------

def _bad_weights(tmp_path, good, kind):
    import pickle
    path = tmp_path / f"{kind}.npz"
    data = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif kind == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif kind == "flipped":
        b = bytearray(data)
        for i in range(len(b) // 3, len(b) // 3 + 200):
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "objects":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif kind == "strings":
        np.savez(path, x=np.array(["a", "b"]))
    elif kind == "not_npy":                     # a zip member that is no array at all
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not an array")
    elif kind == "huge":                        # a header asking for 40 TB, then 64 bytes
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (10 ** 13,)})
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("w.npy", header.getvalue() + bytes(64))
    return path


WEIGHTS = ["empty", "random", "truncated", "flipped", "pickle", "objects", "strings",
           "not_npy", "huge"]


@pytest.mark.parametrize("kind", WEIGHTS)
def test_load_weights_names_a_bad_npz_file(good, tmp_path, kind):
    path = _bad_weights(tmp_path, good, kind)
    with pytest.raises(CheckpointFormatError) as e:
        models.load_weights(models.mobilenet_v1(alpha=0.25), path)
    assert str(path) in str(e.value)
    assert "unsafely" not in str(e.value) and "pickle.load" not in str(e.value)


@pytest.mark.parametrize("kind", WEIGHTS)
def test_predict_weights_a_bad_file_is_one_line_that_blames_the_file(good, tmp_path, capsys,
                                                                    kind):
    path = _bad_weights(tmp_path, good, kind)
    err = one_line_error(capsys, predict.main, [str(gray_png(tmp_path)), "--model",
                                                "mobilenet_v2", "--weights", str(path)],
                         str(path))
    assert "--model" not in err and "unsafely" not in err and "pickle.load" not in err


# ---- images -------------------------------------------------------------------------------

def test_16_bit_gray_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image
    v = (np.arange(12 * 10).reshape(10, 12) * 546).astype(np.uint16)         # 0..64974
    path = tmp_path / "g16.png"
    Image.fromarray(v).save(path)
    assert Image.open(path).mode.startswith("I")                    # Pillow's 16-bit mode
    want = np.round(v / 257).astype(np.uint8)
    np.testing.assert_array_equal(load_image(path, "L"), want)
    np.testing.assert_array_equal(load_image(path, "RGB"), np.stack([want] * 3, axis=-1))
    assert load_image(path, None).dtype == np.uint8


def test_imagenet_transform_scales_a_16_bit_pil_image(tmp_path):
    from PIL import Image
    from tinymobilenet.data import imagenet_transform
    pixels = np.asarray(draw_image(1, seed=0, size=(40, 30)))
    t = imagenet_transform(resize=32, crop=24)
    # the 16-bit pixels scale back to the 8-bit ones exactly, then the same computation runs
    np.testing.assert_array_equal(t(Image.fromarray(pixels)),
                                  t(Image.fromarray(pixels.astype(np.uint16) * 257)))


def test_16_bit_tiff_and_pgm_are_scaled(tmp_path):
    from PIL import Image
    v = np.array([[0, 257, 65535, 30000]], np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.tiff")
    np.testing.assert_array_equal(load_image(tmp_path / "g16.tiff", "L"), [[0, 1, 255, 117]])
    # a PGM of maxval 4095 (12 bits): Pillow stretches it to 0..65535, then to 0..255
    (tmp_path / "g12.pgm").write_bytes(b"P5\n2 1\n4095\n" + np.array([0, 4095], ">u2").tobytes())
    np.testing.assert_array_equal(load_image(tmp_path / "g12.pgm", "L"), [[0, 255]])


def test_pixels_of_unknown_range_are_refused_naming_the_file(tmp_path, good, capsys):
    from PIL import Image
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(
        tmp_path / "float.tiff")
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000).save(
        tmp_path / "int32.tiff")
    for name in ("float.tiff", "int32.tiff"):
        with pytest.raises(ImageError, match=f"{name}.*range"):
            load_image(tmp_path / name, "L")
    one_line_error(capsys, predict.main, [str(tmp_path / "float.tiff"), "--checkpoint",
                                          str(good)], "float.tiff", "16-bit PNG")


def test_16_bit_images_train_and_predict_like_their_8_bit_copies(good, tmp_path):
    """An image folder of 16-bit PNGs gives the inputs of its 8-bit copy (it used to give
    white images), and so does a checkpoint's transform."""
    from PIL import Image
    from tinymobilenet.data import image_folder
    for bits in (8, 16):
        for k in range(2):
            (tmp_path / f"b{bits}" / f"c{k}").mkdir(parents=True)
            for i in range(3):
                pixels = np.asarray(draw_image(k, seed=10 * k + i, size=(8, 8)))
                if bits == 16:
                    pixels = pixels.astype(np.uint16) * 257
                Image.fromarray(pixels).save(tmp_path / f"b{bits}" / f"c{k}" / f"{i}.png")
    eight, sixteen = (image_folder(tmp_path / f"b{bits}", 8) for bits in (8, 16))
    # v * 257 scaled back by / 257 gives the 8-bit pixels exactly; from there the same
    # computation runs on the same pixels: bit for bit
    np.testing.assert_array_equal(eight.train.x, sixteen.train.x)
    transform = ImageTransform.from_dict(read_checkpoint(good)[0]["config"]["transform"])
    np.testing.assert_array_equal(transform(tmp_path / "b8/c1/0.png"),
                                  transform(tmp_path / "b16/c1/0.png"))


def test_image_transform_refuses_bad_values():
    for kwargs, match in [(dict(std=0.0), "std must be > 0"), (dict(std=float("inf")), "std"),
                          (dict(mean=[]), "mean"), (dict(size=0), "size"),
                          (dict(mode="P"), "mode"), (dict(mean=[0.1, 0.2]), "mean")]:
        with pytest.raises(ValueError, match=match):
            ImageTransform(**kwargs)
    with pytest.raises(ValueError, match="'std'"):
        ImageTransform.from_dict({"mode": "L", "size": 8, "mean": [0.0]})


# ---- outputs and other files of the commands -----------------------------------------------

def test_train_out_an_existing_file_is_refused_before_the_data_loads(tmp_path, capsys,
                                                                   monkeypatch):
    from tinymobilenet.train import runner
    monkeypatch.setattr(runner, "load_data", lambda *a, **k: pytest.fail("data loaded"))
    file = gray_png(tmp_path)
    one_line_error(capsys, train.main, ["--out", str(file), "--progress", "none"],
                   str(file), "not a folder")


def test_evaluate_out_a_directory_is_refused_before_the_work(good, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    one_line_error(capsys, evaluate.main, ["--checkpoint", str(good), "--out",
                                           str(tmp_path / "d")], "--out", "is a directory")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write(tmp_path / "d", lambda f: f.write(b"x"))


def test_evaluate_says_the_folder_came_from_the_checkpoint(good, tmp_path, capsys):
    (tmp_path / "elsewhere").mkdir()
    path = variant(good, tmp_path, "data", setc("data", str(tmp_path / "elsewhere")))
    one_line_error(capsys, evaluate.main, ["--checkpoint", str(path), "--out",
                                           str(tmp_path / "c.png")],
                   "named by the checkpoint", "--data DIR")


def test_confusion_matrix_refuses_labels_out_of_range():
    with pytest.raises(ValueError, match="outside 0..1"):
        evaluate.confusion_matrix([0, 1], [0, 5], 2)


@pytest.mark.parametrize("content, needle", [
    (None, "no such"), (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"), (b'{"history": 5}', "history"),
    (b"[]", "history"), (b"garbage", "not a metrics.json"), ("dir", "is a directory")])
def test_figures_train_metrics_bad_file_is_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "m.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    one_line_error(capsys, figures.main, ["--only", "training_curves", "--train-metrics",
                                          str(path), "--out", str(tmp_path / "f")],
                   "--train-metrics", str(path), needle)


def test_figures_bench_report_and_out_bad_is_one_line(tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text('{"history": 5}')
    one_line_error(capsys, figures.main, ["--only", "bench_ratios", "--bench-report",
                                          str(report), "--out", str(tmp_path / "f")],
                   "--bench-report", str(report), "results")
    one_line_error(capsys, figures.main, ["--only", "bench_ratios", "--bench-report",
                                          str(tmp_path), "--out", str(tmp_path / "f")],
                   "is a directory")
    file = gray_png(tmp_path)
    one_line_error(capsys, figures.main, ["--only", "activations", "--out", str(file)],
                   "--out", "not a folder")


def test_read_json_names_the_file(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100000)
    with pytest.raises(FileError, match="deep.json.*nested too deeply"):
        read_json(tmp_path / "deep.json")


def test_train_benchmark_bad_out_and_family_are_one_line(tmp_path, capsys):
    file = gray_png(tmp_path)
    one_line_error(capsys, train_benchmark.main, ["--family", "dense_mobilenet", "--out",
                                                  str(file)], "--out", "not a folder")
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "benchmark.json").write_text("garbage")
    one_line_error(capsys, train_benchmark.main, ["--family", "dense_mobilenet", "--out",
                                                  str(tmp_path / "tb")], "benchmark.json")
    err = one_line_error(capsys, train_benchmark.main, ["--family", "foo"], "'foo'")
    assert "all" in err and "efficientnet," in err and "dense_mobilenet" in err


# ---- help and option messages ---------------------------------------------------------------

def test_count_rho_error_names_rho_and_help_shows_defaults(capsys):
    one_line_error(capsys, count.main, ["--rho", "1e-9"], "--rho")
    with pytest.raises(SystemExit):
        count.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: table)" in out and "five options" not in out
    assert "--model, --alpha, --resolution, --rho, --num-classes and --in-channels" in out
    assert "--rho P resolution multiplier" in out and "(default: none" in out


def test_train_help_states_the_bounds_it_enforces(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for bound in ("0 <= s <= 0.99", "0 <= P <= 0.99", "0 <= M <= 0.999", "0 < F <= 0.95"):
        assert bound in out
    assert "TIFF" in out and "PNG or JPEG" not in out
    one_line_error(capsys, train.main, ["--dropout", "1"], "--dropout", "0.99")


def test_read_checkpoint_of_a_good_file_is_unchanged(good):
    meta, arrays = read_checkpoint(good)
    assert meta["config"]["classes"] == CLASSES and "model/classifier.1.weight" in arrays
