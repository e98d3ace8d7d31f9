"""Your own images: data.image_folder, the transform of an image file, and train --data."""

import json
import subprocess
import sys

import numpy as np
import pytest

import tinymobilenet.data as D
from tinymobilenet import train

from conftest import draw_image, make_image_folder


def test_one_level_folder_is_split_per_class_seeded_and_recorded(tmp_path):
    root = make_image_folder(tmp_path / "img", per_class=10)
    train_set, test_set = D.image_folder(root, resolution=16, seed=0)
    assert train_set.classes == test_set.classes == ("bar0", "bar1", "bar2")    # sorted names
    assert train_set.x.shape == (24, 1, 16, 16) and test_set.x.shape == (6, 1, 16, 16)
    assert train_set.x.dtype == np.float32 and train_set.y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(test_set.y), [2, 2, 2])          # stratified
    split = train_set.info["split"]
    assert split["kind"] == "stratified" and split["seed"] == 0
    assert sorted(split["train"] + split["test"]) == sorted(
        f"bar{k}/{i}.png" for k in range(3) for i in range(10))                # every file once
    again = D.image_folder(root, resolution=16, seed=0).train.info["split"]
    other = D.image_folder(root, resolution=16, seed=1).train.info["split"]
    assert again == split and other["test"] != split["test"]
    # standardised with the training images' own statistics
    assert abs(train_set.x.mean()) < 1e-4 and abs(train_set.x.std() - 1) < 1e-3


def test_each_class_draws_its_own_test_images():
    """Each class's test images come from its own draw of the seeded generator. Three
    classes of 40 files, half of them for testing: two independent draws choose the same
    20 positions with probability 1 / C(40, 20) < 1e-11, so for any seed the classes' test
    positions differ, while a split that reuses one permutation for every class gives every
    class of the same size the same positions. (Paths only: splitting reads no file.)"""
    from math import comb
    from pathlib import Path
    n = 40
    assert comb(n, n // 2) > 1e11
    found = {c: [Path(c) / f"{i}.png" for i in range(n)] for c in ("a", "b", "c")}
    for seed in range(3):
        train_part, test_part = D.split_files(found, test_fraction=0.5, seed=seed)
        chosen = [frozenset(found[c].index(p) for p in test_part[c]) for c in found]
        assert [len(s) for s in chosen] == [n // 2] * 3                      # stratified
        assert len(set(chosen)) == 3, f"seed {seed}: classes share their test positions"
        for c, files in found.items():               # disjoint, each in the folder's order
            assert set(train_part[c]).isdisjoint(test_part[c])
            for part in (train_part[c], test_part[c]):
                assert part == sorted(part, key=files.index)


@pytest.mark.parametrize("test_fraction", [0.05, 0.95])
def test_every_class_keeps_a_training_and_a_test_image(test_fraction):
    """However small or large ``test_fraction``, each class of 2 or more images keeps at
    least one image in each part (the split is stratified), and every file is in exactly
    one part; 0 and 1 are refused."""
    from pathlib import Path
    found = {c: [Path(c) / f"{i}.png" for i in range(n)] for c, n in (("a", 2), ("b", 3),
                                                                       ("c", 11))}
    train_part, test_part = D.split_files(found, test_fraction, seed=0)
    for c, files in found.items():
        assert train_part[c] and test_part[c], c
        assert sorted(train_part[c] + test_part[c]) == sorted(files)
    for bad in (0, 1):
        with pytest.raises(ValueError, match="test_fraction"):
            D.split_files(found, bad)


def test_labels_index_the_sorted_class_names(tmp_path):
    """Each image's label is the position of its class folder's name in ``classes`` (the
    names sorted: here not the order of their lengths, nor of the bars drawn)."""
    names = ("zebu", "aardvark", "bee")
    root = make_image_folder(tmp_path / "img", classes=names, per_class=3)
    for which, part in zip(("train", "test"), D.image_folder(root, 8, test_fraction=0.4)):
        assert part.classes == tuple(sorted(names))
        folders = [p.split("/")[0] for p in part.info["split"][which]]
        assert [part.classes[k] for k in part.y] == folders


def test_train_and_test_folders_and_mixed_sizes(tmp_path):
    make_image_folder(tmp_path / "img" / "train", per_class=4, size=(12, 10))
    make_image_folder(tmp_path / "img" / "test", per_class=2, size=(30, 17), ext="jpg")
    train_set, test_set = D.image_folder(tmp_path / "img", resolution=8)
    assert (len(train_set), len(test_set)) == (12, 6)
    assert test_set.x.shape[1:] == train_set.x.shape[1:] == (1, 8, 8)          # resized
    assert train_set.info["split"]["kind"] == "folders"
    assert train_set.info["split"]["test"][0] == "test/bar0/0.jpg"


def test_input_channels_are_inferred_or_forced(tmp_path):
    root = make_image_folder(tmp_path / "img", per_class=3)
    assert D.image_folder(root, resolution=8, test_fraction=0.4).train.x.shape[1] == 1
    assert D.image_folder(root, resolution=8, test_fraction=0.4, in_channels=3).train.x.shape[1] == 3
    from PIL import Image
    for path in (root / "bar1").iterdir():                  # gray with an alpha channel: gray
        with Image.open(path) as im:
            im.convert("LA").save(path)
    assert D.image_folder(root, resolution=8, test_fraction=0.4).train.x.shape[1] == 1
    draw_image(0, 7, mode="RGB").save(root / "bar0" / "colour.png")             # one RGB file
    train_set, _ = D.image_folder(root, resolution=8, test_fraction=0.4)
    assert train_set.x.shape[1] == 3
    assert train_set.info["transform"]["mode"] == "RGB"
    assert D.image_folder(root, resolution=8, test_fraction=0.4, in_channels=1).train.x.shape[1] == 1


def test_the_transform_of_a_file_is_its_row_in_the_data_set(tmp_path):
    root = make_image_folder(tmp_path / "img", per_class=5, size=(20, 14))
    train_set, _ = D.image_folder(root, resolution=12, seed=3)
    transform = D.ImageTransform.from_dict(train_set.info["transform"])
    first = root / train_set.info["split"]["train"][0]
    # the same decoding, resizing and element-wise arithmetic: the same numbers
    np.testing.assert_array_equal(transform(first), train_set.x[0])
    assert transform.load([first]).shape == (1, 1, 12, 12)
    flat = D.image_folder(root, resolution=12, seed=3, flatten=True).train
    assert flat.x.shape == (len(train_set), 144)
    np.testing.assert_array_equal(flat.x[0], train_set.x[0].ravel())


@pytest.mark.parametrize("damage, message", [
    ("missing", "no such folder"),
    ("empty", "no class folders"),
    ("one class", "only one class folder (bar0)"),
    ("empty class", "class 'bar9' has no images"),
    ("truncated jpeg", "bar1/cut.jpg: cannot read the image"),
    ("text named png", "bar1/text.png: not an image file"),
    ("not an image name", "bar1/notes.txt: not an image file name"),
    ("stray image", "image file loose.png beside the class folders"),
    ("one image", "class 'bar2' has 1 image"),
    ("train without test", "has train/ but no test/"),
    ("different classes", "missing bar2"),
    ("renamed class", "missing bar2; not in train: bar3"),
])
def test_a_bad_folder_is_one_error_naming_it(tmp_path, damage, message):
    root = tmp_path / "img"
    if damage == "missing":
        pass
    elif damage == "empty":
        root.mkdir()
    elif damage == "one class":
        make_image_folder(root, classes=("bar0",))
    elif damage in ("train without test", "different classes", "renamed class"):
        make_image_folder(root / "train")
        if damage == "different classes":
            make_image_folder(root / "test", classes=("bar0", "bar1"))
        elif damage == "renamed class":                      # as many classes, other names
            make_image_folder(root / "test", classes=("bar0", "bar1", "bar3"))
    else:
        make_image_folder(root)
        if damage == "empty class":
            (root / "bar9").mkdir()
        elif damage == "truncated jpeg":
            draw_image(1, 5, size=(64, 64)).save(root / "bar1" / "ok.jpg")
            data = (root / "bar1" / "ok.jpg").read_bytes()
            (root / "bar1" / "cut.jpg").write_bytes(data[: len(data) // 2])
        elif damage == "text named png":
            (root / "bar1" / "text.png").write_text("not an image")
        elif damage == "not an image name":
            (root / "bar1" / "notes.txt").write_text("labels?")
        elif damage == "stray image":
            draw_image(0, 1).save(root / "loose.png")
        elif damage == "one image":
            for p in sorted((root / "bar2").iterdir())[1:]:
                p.unlink()
    with pytest.raises((D.FolderError, D.ImageError), match=message.replace("(", r"\(")
                       .replace(")", r"\)")):
        D.image_folder(root, resolution=8)


def test_class_folders_may_nest_and_name_images_in_any_case(tmp_path):
    """An image in a subfolder of a class folder belongs to that class; extensions match
    in any case (.JPEG, .Png); a hidden folder inside a class is skipped."""
    root = make_image_folder(tmp_path / "img", per_class=1)
    (root / "bar0" / "more").mkdir()
    draw_image(0, 50).save(root / "bar0" / "more" / "deep.png")
    draw_image(1, 51).save(root / "bar1" / "UPPER.JPEG", format="JPEG")
    draw_image(1, 52).save(root / "bar1" / "mixed.Png", format="PNG")
    draw_image(2, 53).save(root / "bar2" / "photo.jpeg", format="JPEG")
    (root / "bar2" / ".thumbnails").mkdir()
    draw_image(2, 54).save(root / "bar2" / ".thumbnails" / "small.png")
    found = {c: [p.relative_to(root / c).as_posix() for p in files]
             for c, files in D.find_images(root).items()}
    assert found == {"bar0": ["0.png", "more/deep.png"], "bar1": ["0.png", "UPPER.JPEG",
                                                                    "mixed.Png"],
                     "bar2": ["0.png", "photo.jpeg"]}


def test_hidden_files_are_ignored(tmp_path):
    root = make_image_folder(tmp_path / "img", per_class=3)
    (root / "bar0" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / ".git").mkdir()
    assert D.image_folder(root, resolution=8, test_fraction=0.4).train.classes == (
        "bar0", "bar1", "bar2")


# ---- train --data ------------------------------------------------------------------------

def test_train_on_a_folder_prints_and_saves_the_split(tmp_path, capsys):
    root = make_image_folder(tmp_path / "img", per_class=8)
    out = tmp_path / "run"
    assert train.main(["--data", str(root), "--resolution", "16", "--epochs", "1",
                       "--batch-size", "8", "--out", str(out), "--progress", "none"]) == 0
    said = capsys.readouterr().out
    assert "3 classes, 18 training / 6 test" in said and str(out / "split.json") in said
    split = json.loads((out / "split.json").read_text())
    meta = train.load_checkpoint(out / "checkpoint.npz")
    assert meta["config"]["split"] == split and meta["config"]["classes"] == ["bar0", "bar1",
                                                                                "bar2"]
    assert meta["config"]["data"] == "../img"             # relative to the run directory
    assert meta["config"]["model_options"]["in_channels"] == 1


def test_train_on_a_bad_folder_is_one_line_and_exit_2(tmp_path):
    root = make_image_folder(tmp_path / "img")
    draw_image(1, 5, size=(64, 64)).save(root / "bar1" / "ok.jpg")
    data = (root / "bar1" / "ok.jpg").read_bytes()
    (root / "bar1" / "cut.jpg").write_bytes(data[: len(data) // 2])
    r = subprocess.run([sys.executable, "-m", "tinymobilenet.train", "--data", str(root),
                        "--epochs", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "cut.jpg: cannot read the image" in r.stderr
