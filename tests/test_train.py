"""The trainer: learning, precise BN, every family, reproducibility, checkpoints, the CLI."""

import io
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinymobilenet import count, models, nn, train
from tinymobilenet.data import DIGITS_TRAIN_SIZE, load_digits, random_shift
from tinymobilenet.models import mobilenet_v1
from tinymobilenet.optim import SGD, Cosine, Warmup, param_groups


@pytest.fixture(scope="module")
def digits():
    return load_digits()                       # 8 x 8, 1,437 / 360 images


def small_net(seed=0, dropout=0.2):
    """A two-block depthwise separable network for 8 x 8 digits, with dropout (so its
    random generator must be saved and restored for a resumed run to match)."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2dNormActivation(1, 16, 3, rng=rng),
        nn.DepthwiseSeparable(16, 32, stride=2, rng=rng),
        nn.DepthwiseSeparable(32, 64, stride=2, rng=rng),
        nn.GlobalAvgPool2d(flatten=True),
        nn.Dropout(dropout, rng=rng),
        nn.Linear(64, 10, rng=rng),
    )


def make_run(seed=0):
    model = small_net(seed)
    opt = SGD(param_groups(model, 1e-4), lr=0.1, momentum=0.9, nesterov=True)
    schedule = Warmup(Cosine(0.1, 4 * 12), 4)
    return model, opt, schedule


def shift(x, rng):
    return random_shift(x, 1, rng)


def fit_small(data, epochs, **kwargs):
    model, opt, schedule = make_run()
    history = train.fit(model, data, epochs, opt, schedule, batch_size=128, augment=shift,
                        progress=None, **kwargs)
    return model, opt, history


def same_weights(a, b):
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)


def test_training_reduces_the_loss_markedly(digits):
    model, opt, _ = make_run()
    loss0, acc0 = train.evaluate(model, digits.test)
    history = train.fit(model, digits.train, 5, opt, Warmup(Cosine(0.1, 5 * 12), 4),
                        test_data=digits.test, batch_size=128, augment=shift, progress=None)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert history[-1]["test_loss"] < 0.5 * loss0
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.8 > acc0
    assert not model.training                              # fit leaves the model in eval mode
    assert opt.step_count == 5 * 12


def test_evaluate_and_predict_use_eval_mode_and_restore_it(digits):
    model = small_net()
    model.train()
    x = digits.test.x[:70]
    labels = train.predict(model, x, batch_size=32)
    logits = train.predict(model, x, batch_size=32, logits=True)
    assert labels.shape == (70,) and logits.shape == (70, 10)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))   # the same batches twice
    # one batch of 70 against batches of 32: other matrix shapes, which the BLAS may block
    # differently, so the last bits may differ; what this protects is eval mode (no dropout,
    # running statistics), which would change the logits by far more than float32 round-off
    np.testing.assert_allclose(logits, train.predict(model, x, logits=True), rtol=1e-5,
                               atol=1e-6 * np.abs(logits).max())
    assert model.training
    loss, acc = train.evaluate(model, (digits.test.x, digits.test.y))
    assert loss > 0 and 0 <= acc <= 1 and model.training


def test_fit_takes_feature_vectors(digits):
    """The 1-D models train on (N, D) data: the digits as 64-pixel vectors."""
    data = digits.train.flatten()
    assert data.x.shape == (1437, 64)
    model = models.dense.mobilenet(64, hidden_dims=(32, 64), num_classes=10)
    opt = SGD(param_groups(model, 5e-4), lr=0.05, momentum=0.9, nesterov=True)
    history = train.fit(model, data[:512], 3, opt, batch_size=64, progress=None,
                        test_data=digits.test.flatten())
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5


def test_each_update_uses_the_lr_of_its_own_step_and_each_epoch_its_own_order(digits):
    """The schedule is asked for steps 0, 1, 2, ... in order, once before each update (the
    first update at schedule(0)); every epoch shuffles with its own generator, so two
    epochs see the samples in different orders."""
    data = digits.train.flatten()[:96]
    model = models.dense.mobilenet(64, hidden_dims=(16,), num_classes=10)
    asked, seen = [], []

    def schedule(step):
        asked.append(step)
        return 0.01

    def augment(x, rng):
        seen.append(x.copy())
        return x
    train.fit(model, data, 2, SGD(model.parameters(), lr=0.5), schedule, batch_size=32,
              augment=augment, progress=None, precise_bn=0)
    assert asked == list(range(6))
    assert not np.array_equal(np.concatenate(seen[:3]), np.concatenate(seen[3:]))


def test_same_seed_same_weights_bit_for_bit(digits):
    # the same computation repeated in one process (same machine, same threads): bit for bit
    a, _, ha = fit_small(digits.train[:256], 2)
    b, _, hb = fit_small(digits.train[:256], 2)
    same_weights(a, b)
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]


def test_resumed_run_equals_uninterrupted_run(digits, tmp_path):
    # resuming replays the same computation (same machine, same threads, same batches):
    # bit for bit is what "resume" promises
    data = digits.train[:384]
    full, full_opt, full_hist = fit_small(data, 3)
    ckpt = tmp_path / "ckpt.npz"
    fit_small(data, 2, checkpoint=ckpt)                    # "interrupted" after epoch 2
    model, opt, schedule = make_run()                      # a fresh process would do this
    history = train.fit(model, data, 3, opt, schedule, batch_size=128, augment=shift,
                        progress=None, resume=ckpt)
    same_weights(full, model)
    for va, vb in zip(full_opt.velocity, opt.velocity):
        np.testing.assert_array_equal(va, vb)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(history) == strip(full_hist)


# ---- precise BN --------------------------------------------------------------------------
def logit_spread(model, x, training):
    """Mean over classes of the logits' standard deviation across samples."""
    model.train(training)
    out = model(x)
    model.eval()
    return float(out.std(axis=0).mean())


def test_precise_bn_fixes_the_collapse_of_a_slow_momentum():
    """MobileNetV3's BN momentum 0.01 (torchvision's): after a few dozen steps the running
    statistics still describe the initial weights, so eval-mode outputs no longer depend
    on the input. Precise BN re-estimates them; the model's momentum stays 0.01."""
    train_set, test_set = load_digits(16)
    model = models.mobilenet_v3_small(num_classes=10, in_channels=1)
    opt = SGD(param_groups(model, 1e-4), lr=0.05, momentum=0.9, nesterov=True)
    data = train_set[:256]
    # 5 epochs: after 3 the accuracy after precise BN was 0.29-0.49, by round-off alone
    train.fit(model, data, 5, opt, Warmup(Cosine(0.05, 36), 4), batch_size=32,
              progress=None, precise_bn=0)
    bns = train.batchnorm_layers(model)
    assert {b.momentum for b in bns} == {0.01}
    x = test_set.x[:64]
    spread_train = logit_spread(model, x, True)
    assert logit_spread(model, x, False) < 1e-3 * spread_train       # collapsed
    assert train.evaluate(model, test_set)[1] < 0.2                    # about chance
    tracked = [int(b.num_batches_tracked) for b in bns]
    rng_state = model.classifier[2].rng.bit_generator.state          # the dropout's
    assert train.precise_bn(model, data, images=256, batch_size=32) == 256
    assert 0.5 < logit_spread(model, x, False) / spread_train < 2      # eval ~ train mode
    assert train.evaluate(model, test_set)[1] > 0.3
    assert {b.momentum for b in bns} == {0.01}                         # the model's own
    assert [int(b.num_batches_tracked) for b in bns] == tracked
    assert model.classifier[2].rng.bit_generator.state == rng_state   # dropout was off
    assert not model.training


def test_precise_bn_is_the_average_of_the_batch_statistics():
    """With one BN layer the estimate is exactly the mean over the batches of the batch
    means and of the unbiased batch variances (a cumulative average)."""
    rng = np.random.default_rng(0)
    x = (3 + 2 * rng.standard_normal((96, 4, 5, 5))).astype(np.float64)
    data = train.loop.as_dataset((x, np.zeros(96, np.int64)))
    model = nn.Sequential(nn.BatchNorm2d(4, momentum=0.01)).to(np.float64)
    train.precise_bn(model, data, images=96, batch_size=32, seed=3)
    order = np.random.default_rng(3).permutation(96)     # the sample precise_bn draws
    parts = [x[order[i:i + 32]] for i in (0, 32, 64)]
    bn = model[0]
    np.testing.assert_allclose(bn.running_mean, np.mean([p.mean(axis=(0, 2, 3)) for p in parts],
                                                        axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, np.mean([p.var(axis=(0, 2, 3), ddof=1)
                                                        for p in parts], axis=0), rtol=1e-12)
    assert bn.momentum == 0.01


# one fast smoke test per family: a few steps with the family's recipe on a few digits
SMOKE = [("mobilenet_v1", 16), ("mobilenet_v2", 16), ("mobilenet_v3_small", 16),
         ("mobilenet_v3_large", 16), ("efficientnet_b0", 16), ("dense_mobilenet", 8),
         ("dense_efficientnet", 8)]


@pytest.mark.parametrize("name, resolution", SMOKE, ids=[n for n, _ in SMOKE])
def test_every_family_trains_a_few_steps(name, resolution):
    c = {**train.recipe(name), "resolution": resolution}
    train_set, test_set, _ = train.load_data(c)
    data = train_set[:128]
    model = models.get_model(name, **train.model_options(name, c["alpha"], 10,
                                                         data.x.shape[1:]))
    if c["classifier_range"]:
        train.init_classifier(model, c["classifier_range"])
    if c["zero_init_residual"]:
        train.zero_init_residual(model)
    opt = SGD(param_groups(model, c["weight_decay"]), lr=c["lr"], momentum=0.9, nesterov=True)
    # 5 epochs of 4 steps: after 3 the loss of MobileNetV2 at 16 px had barely moved
    # (2.34 -> 2.37 or 2.13, depending on round-off alone)
    history = train.fit(model, data, 5, opt, Warmup(Cosine(c["lr"], 17), 3),
                        batch_size=32, progress=None, precise_bn=c["precise_bn"])
    losses = [r["train_loss"] for r in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    x = test_set.x[:64]
    logits = train.predict(model, x, logits=True)
    assert np.isfinite(logits).all()
    # eval-mode statistics sane: outputs vary with the input about as in train mode
    ratio = logit_spread(model, x, False) / logit_spread(model, x, True)
    assert 0.2 < ratio < 5, ratio
    for bn in train.batchnorm_layers(model):
        # var 0 is legitimate: a channel a dead ReLU feeds through a depthwise conv
        assert np.isfinite(bn.running_mean).all() and (bn.running_var >= 0).all()


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0", "mobilenet_v2"])
def test_zero_init_residual_starts_every_residual_block_as_the_identity(name):
    model = models.get_model(name, num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, nn.InvertedResidual)
              and m.use_res_connect]
    assert train.zero_init_residual(model) == len(blocks) > 0
    rng = np.random.default_rng(0)
    for training in (True, False):
        model.train(training)
        for block in blocks[:4]:
            x = rng.standard_normal((2, block.in_channels, 9, 7)).astype(np.float32)
            # the branch's last batch norm gives beta = 0 exactly: x + 0 is x bit for bit
            np.testing.assert_array_equal(block(x), x)
    other = models.get_model(name, num_classes=10)               # untouched: branches live
    block = [m for m in other.modules() if isinstance(m, nn.InvertedResidual)
             and m.use_res_connect][0].eval()
    x = rng.standard_normal((2, block.in_channels, 9, 7)).astype(np.float32)
    assert np.abs(block(x) - x).max() > 1e-3


def test_zero_init_residual_reaches_the_1d_blocks_too():
    model = models.get_model("dense_efficientnet", input_dim=16, num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, nn.DenseMBConv) and m.use_res_connect]
    assert train.zero_init_residual(model) == len(blocks) > 0
    x = np.random.default_rng(0).standard_normal((3, blocks[0].in_features)).astype(np.float32)
    np.testing.assert_array_equal(blocks[0].eval()(x), x)     # x + 0, bit for bit


def test_the_efficientnet_recipe_and_only_it_zero_inits_residual_blocks():
    assert all(train.recipe(n)["zero_init_residual"] for n in train.FAMILIES["efficientnet"])
    assert not any(train.recipe(n)["zero_init_residual"]
                   for f in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "dense")
                   for n in train.FAMILIES[f])


def test_every_model_has_a_recipe_and_its_own_alpha():
    for name in models.MODEL_NAMES + models.DENSE_MODEL_NAMES:
        c = train.recipe(name)
        assert c["model"] == name and c["epochs"] >= 1 and c["lr"] > 0
        shape = (64,) if c["recipe"] == "dense" else (1, 32, 32)
        options = train.model_options(name, c["alpha"], 10, shape)    # the default alpha fits
        if name in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "dense_mobilenet"):
            models.get_model(name, **options)                      # (B7 is 66 M parameters)
    assert train.recipe("efficientnet_b0")["alpha"] is None
    assert train.recipe("mobilenet_v1") == train.DEFAULTS
    assert train.recipe("mobilenet_v3_large")["recipe"] == "mobilenet_v3"
    with pytest.raises(ValueError, match="no width multiplier"):
        train.model_options("efficientnet_b0", 0.5)
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        train.recipe("resnet50")


# ---- checkpoints -------------------------------------------------------------------------
def test_checkpoint_round_trip(digits, tmp_path):
    model, opt, history = fit_small(digits.train[:128], 1)
    path = tmp_path / "c.npz"
    train.save_checkpoint(path, model, opt, 1, history, {"note": "x"}, seed=0)
    fresh, fresh_opt, _ = make_run(seed=1)
    meta = train.load_checkpoint(path, fresh, fresh_opt)    # a copy: exact
    assert meta["epoch"] == 1 and meta["config"] == {"note": "x"} and meta["history"] == history
    same_weights(model, fresh)
    assert fresh_opt.step_count == opt.step_count and fresh_opt.lr == opt.lr
    with np.load(path, allow_pickle=False) as f:                # plain arrays and a string
        assert all(f[k].dtype != object for k in f.files)


def test_refuses_pickled_and_foreign_files(tmp_path):
    model, opt, _ = make_run()
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    with pytest.raises(train.CheckpointError, match="not a tinymobilenet checkpoint"):
        train.load_checkpoint(pickled, model)
    objects = tmp_path / "objects.npz"
    np.savez(objects, meta=np.array([{"format": 1}], dtype=object))
    with pytest.raises(train.CheckpointError, match="not a tinymobilenet checkpoint"):
        train.load_checkpoint(objects, model)
    good = tmp_path / "good.npz"
    train.save_checkpoint(good, model, opt, 0)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(train.CheckpointError, match="not a tinymobilenet checkpoint"):
        train.load_checkpoint(truncated, model)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weight=np.zeros(3))
    with pytest.raises(train.CheckpointError, match="no 'meta'"):
        train.load_checkpoint(plain, model)
    with pytest.raises(train.CheckpointError, match="no such checkpoint file"):
        train.load_checkpoint(tmp_path / "missing.npz", model)


def test_refuses_a_checkpoint_of_another_model(tmp_path):
    model, opt, _ = make_run()
    path = tmp_path / "c.npz"
    train.save_checkpoint(path, model, opt, 0)
    other = mobilenet_v1(0.25, 10, in_channels=1)
    with pytest.raises(train.CheckpointError, match="does not match the model.*key"):
        train.load_checkpoint(path, other)
    wider = nn.Sequential(*list(small_net())[:-1], nn.Linear(64, 12))
    with pytest.raises(train.CheckpointError, match="5.weight"):
        train.load_checkpoint(path, wider)
    fewer = SGD(model.parameters()[:3], lr=0.1)
    with pytest.raises(train.CheckpointError, match="does not match the optimizer"):
        train.load_checkpoint(path, small_net(), fewer)
    with pytest.raises(train.CheckpointError, match="does not say how to build"):
        train.load_model(path)                 # saved without a trainer configuration


def test_a_failed_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    model, opt, _ = make_run()
    path = tmp_path / "c.npz"
    train.save_checkpoint(path, model, opt, 1)
    before = path.read_bytes()

    def savez_then_fail(f, **arrays):
        f.write(b"PK\x03\x04 half a zip archive")       # a write that stops in the middle
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, model, opt, 2)
    assert path.read_bytes() == before and train.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]   # no temporary left


def test_ctrl_c_raises_training_interrupted_naming_the_saved_epoch(digits, tmp_path):
    ckpt = tmp_path / "c.npz"

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as e:
        fit_small(digits.train[:256], 4, checkpoint=ckpt, on_epoch_end=interrupt)
    assert (e.value.epoch, e.value.checkpoint) == (2, ckpt)
    assert isinstance(e.value, KeyboardInterrupt) and len(e.value.history) == 2
    assert train.load_checkpoint(ckpt)["epoch"] == 2


# ---- runs and the command line -----------------------------------------------------------
TINY = ["--resolution", "8", "--epochs", "1", "--batch-size", "128", "--precise-bn", "256",
        "--progress", "none"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch default-model run at 8 x 8 (seconds): (run directory, metrics)."""
    out = tmp_path_factory.mktemp("run") / "v1"
    assert train.main(TINY + ["--out", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("argv, message", [
    (["--alpha", "0"], "argument --alpha: must be > 0"),
    (["--alpha", "x"], "argument --alpha: not a number"),
    (["--epochs", "0"], "argument --epochs: must be >= 1"),
    (["--resolution", "4"], "--resolution must be >= 8"),
    (["--dataset", "mnist"], "invalid choice"),
    (["--model", "resnet50"], "unknown model 'resnet50'"),
    (["--model", "efficientnet_b0", "--alpha", "0.5"], "no width multiplier"),
    (["--resume", "/nonexistent.npz"], "no such checkpoint file"),
    (["--data", "/nonexistent"], "--data: /nonexistent: no such folder"),
    (["--warmup-epochs", "20", "--epochs", "2"], "--warmup-epochs must be <= --epochs"),
    (["--bogus"], "unrecognized arguments"),
])
def test_cli_bad_options_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("argv, words", [
    (["--alpha", "1000"], ["alpha 1000", "TB", "to train"]),
    (["--resolution", "100000"], ["1x100000x100000", "TB", "to train"]),
])
def test_cli_refuses_absurd_sizes_naming_the_memory(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert all(w in err for w in words) and "more than this machine's" in err


def test_cli_help_shows_every_option_its_default_and_the_recipes(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    assert "usage:" not in text.split("\n\n", 2)[1]               # a sentence, then options
    blocks = {}                                   # "--flag" -> its help text
    for line in text.split("\noptions:", 1)[1].split("\n\n", 1)[0].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            blocks[flag] = line
        elif line.strip():
            blocks[flag] += " " + line.strip()
    options = [a for a in train.build_parser()._actions if a.option_strings != ["-h", "--help"]]
    assert sorted(blocks) == sorted(["-h"] + [a.option_strings[0] for a in options])
    for action in options:
        part = blocks[action.option_strings[0]]
        assert "default" in part and len(part.split()) > 5, part
    for family in train.RECIPES:
        assert f"\n{family} " in text
    assert "precise BN" in text


def test_cli_writes_metrics_and_checkpoint(tiny_run):
    out, metrics = tiny_run
    assert 0 <= metrics["test_accuracy"] <= 1 and len(metrics["history"]) == 1
    c = metrics["config"]
    assert c["resolution"] == 8 and c["alpha"] == 0.25 and c["recipe"] == "mobilenet_v1"
    assert c["lr"] == train.RECIPES["mobilenet_v1"]["lr"] and c["precise_bn"] == 256
    assert c["classes"] == list("0123456789") and c["input_shape"] == [1, 8, 8]
    assert metrics["wall_time_seconds"] > 0 and metrics["macs"] > 0 and metrics["params"] > 0
    meta = train.load_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] == 1 and meta["config"] == c


def test_load_model_and_load_weights_read_a_trainer_checkpoint(tiny_run, digits):
    out, metrics = tiny_run
    model = train.load_model(out / "checkpoint.npz")
    assert not model.training and model.num_parameters() == metrics["params"]
    x, y = load_digits(8).test.x, load_digits(8).test.y
    acc = float((train.predict(model, x) == y).mean())
    assert acc == metrics["test_accuracy"]            # the same computation, same numbers
    same = models.load_weights(mobilenet_v1(0.25, num_classes=10, in_channels=1),
                               out / "checkpoint.npz")
    same_weights(model, same)


def test_count_counts_what_was_trained(tiny_run, capsys):
    out, metrics = tiny_run
    assert count.main(["--checkpoint", str(out / "checkpoint.npz"), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["total_params"], d["total_macs"]) == (metrics["params"], metrics["macs"])
    assert d["input_size"] == [1, 1, 8, 8]
    assert count.main(["--alpha", "0.25", "--resolution", "8", "--in-channels", "1",
                       "--num-classes", "10", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["total_params"], d["total_macs"]) == (metrics["params"], metrics["macs"])
    with pytest.raises(SystemExit):
        count.main(["--checkpoint", str(out / "checkpoint.npz"), "--alpha", "1"])
    assert "cannot change them" in capsys.readouterr().err


def test_cli_resume_extends_writes_where_it_says_and_adds_up_the_wall_time(tiny_run, tmp_path,
                                                                         capsys):
    src, first = tiny_run
    ckpt = tmp_path / "v1" / "checkpoint.npz"
    ckpt.parent.mkdir()
    ckpt.write_bytes((src / "checkpoint.npz").read_bytes())
    cwd = os.getcwd()
    os.chdir(tmp_path.parent)            # a relative --resume from another directory
    try:
        rel = os.path.relpath(ckpt)
        assert train.main(["--resume", rel, "--epochs", "2", "--progress", "none"]) == 0
    finally:
        os.chdir(cwd)
    said = capsys.readouterr().out
    assert f"-> {os.path.join(os.path.dirname(rel), 'metrics.json')}" in said
    metrics = json.loads((tmp_path / "v1" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert metrics["history"][0] == first["history"][0]
    assert metrics["config"]["epochs"] == 2
    # the whole run's wall time: what the checkpoint had recorded, plus all of the resumed
    # part (which holds epoch 2 and more); compared with the checkpoint's own record, not
    # with the first run's metrics.json, which also counted its final evaluation
    recorded = train.read_checkpoint(src / "checkpoint.npz", arrays=False)[0]["wall_time_seconds"]
    assert metrics["wall_time_seconds"] > recorded + metrics["history"][1]["seconds"]
    with pytest.raises(SystemExit):                 # a run cannot be shortened
        train.main(["--resume", str(ckpt), "--epochs", "1"])
    assert "already holds 2 epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):                 # its configuration is its own
        train.main(["--resume", str(ckpt), "--lr", "0.1"])
    assert "not --lr" in capsys.readouterr().err


def test_cli_schedule_warms_up_then_ends_its_cosine_with_the_run(tmp_path):
    """The recipe's schedule, as --help states it: a linear warm-up from lr/10 over the
    warm-up epochs, then half a cosine down to 0 over the steps that are left, so that
    the last update of the run is the cosine's last step before 0 (a cosine over all the
    steps, warm-up included, would end the run well above it)."""
    out = tmp_path / "v1"
    assert train.main(["--resolution", "8", "--epochs", "2", "--warmup-epochs", "1",
                       "--batch-size", "128", "--precise-bn", "0", "--progress", "none",
                       "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    c = metrics["config"]
    steps = math.ceil(DIGITS_TRAIN_SIZE / c["batch_size"])      # per epoch
    warmup, total = steps * c["warmup_epochs"], steps * c["epochs"]
    first, last = (r["lr"] for r in metrics["history"])              # each epoch's last update
    assert first == pytest.approx(c["lr"] * (0.1 + 0.9 * (warmup - 1) / warmup), rel=1e-12)
    cosine = total - warmup
    assert last == pytest.approx(c["lr"] * (1 + math.cos(math.pi * (cosine - 1) / cosine)) / 2,
                                 rel=1e-12)


def test_cli_bad_option_prints_no_traceback():
    r = subprocess.run([sys.executable, "-m", "tinymobilenet.train", "--lr", "-1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("python -m tinymobilenet.train: error: argument --lr: "
                                "must be > 0, got -1")


def test_ctrl_c_saves_the_last_epoch_and_prints_the_command_that_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinymobilenet.train", "--resolution", "8", "--epochs", "50",
           "--batch-size", "128", "--progress", "epoch", "--out", str(out)]
    # a shell that starts a job in the background with '&' hands it SIGINT ignored, and a
    # Python started that way keeps it ignored: give the trainer a terminal's Ctrl-C
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:                    # wait for the end of the first epoch
            if line.startswith("epoch 1/50"):
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    resume = f"python -m tinymobilenet.train --resume {out / 'checkpoint.npz'}"
    assert err.strip().endswith(resume)
    meta = train.load_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] >= 1 and len(meta["history"]) == meta["epoch"]


# ---- progress and figure -----------------------------------------------------------------
def test_progress_modes():
    row = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 0.1}
    out = io.StringIO()
    p = train.Progress("epoch", stream=out)
    p.update(1, 2, 1, 3, 1.0, 0.5)
    p.end_epoch(2, row)
    assert out.getvalue().count("\n") == 1 and "epoch 1/2" in out.getvalue()
    out = io.StringIO()
    p = train.Progress("bar", stream=out, interval=0.0)
    for b in (1, 2, 3):
        p.update(1, 2, b, 3, 1.0, 0.5)
    p.end_epoch(2, row)
    assert out.getvalue().count("\r") == 4 and out.getvalue().count("\n") == 1
    assert train.Progress("auto", stream=io.StringIO()).mode == "epoch"   # not a terminal
    with pytest.raises(ValueError, match="progress"):
        train.Progress("fancy")


def test_plot_history_writes_a_png(tmp_path):
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.2 * e,
                "test_loss": 2.1 / e, "test_accuracy": 0.19 * e} for e in (1, 2, 3)]
    fig = train.plot_history(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]


# ---- the training benchmark --------------------------------------------------------------
def test_train_benchmark_checks_each_models_target(tmp_path, monkeypatch, capsys):
    """The bookkeeping of train_benchmark --family (the runs themselves take minutes and
    belong to the benchmark, not the suite): every seed is run with the model's recipe, a
    target holds only if every seed meets both the accuracy and the time."""
    from tinymobilenet import train_benchmark as tb
    calls = []

    def fake_run(config, progress=None, **kwargs):
        calls.append(config)
        acc = {"mobilenet_v1": 0.98, "mobilenet_v2": 0.955}.get(config["model"], 0.5)
        losses = [2.3, 1.0] if config["model"] != "dense_mobilenet" else [2.3, float("nan")]
        return {"test_accuracy": acc + 0.001 * config["seed"], "wall_time_seconds": 30.0,
                "params": 1, "macs": 2, "config": train.recipe(config["model"]),
                "history": [{"train_loss": v, "test_loss": 1.0} for v in losses]}

    monkeypatch.setattr(tb, "run", fake_run)
    assert tb.main(["--family", "mobilenet_v1", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert tb.main(["--family", "mobilenet_v2", "--out", str(tmp_path), "--seeds", "1"]) == 0
    assert tb.main(["--family", "dense_mobilenet", "--out", str(tmp_path), "--seeds", "1"]) == 0
    assert [(c["model"], c["seed"]) for c in calls] == [("mobilenet_v1", 0), ("mobilenet_v1", 1),
                                                        ("mobilenet_v2", 0), ("dense_mobilenet", 0)]
    assert set(calls[0]) == {"model", "seed", "out"}             # nothing but the recipe
    result = json.loads((tmp_path / "benchmark.json").read_text())
    rows = result["families"]
    assert rows["mobilenet_v1"]["target"]["met"] and rows["mobilenet_v1"]["seeds"] == [0, 1]
    assert not rows["mobilenet_v2"]["target"]["met"]             # 95.5 % < 96 %
    assert rows["dense_mobilenet"]["diverged"] and "target" not in rows["dense_mobilenet"]
    assert "MISSED" in capsys.readouterr().out
    assert tb.models_of("mobilenet_v3") == ("mobilenet_v3_small", "mobilenet_v3_large")
    assert len(tb.models_of("all")) == len(models.MODEL_NAMES + models.DENSE_MODEL_NAMES)
