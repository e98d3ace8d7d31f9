"""The trainer: learning, evaluation, reproducibility, checkpoints, the figure and the CLI."""

import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tinymobilenet import nn, train
from tinymobilenet.data import load_digits, random_shift
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


def test_same_seed_same_weights_bit_for_bit(digits):
    # the same computation repeated in one process (same machine, same threads): bit for bit
    a, _, ha = fit_small(digits.train[:256], 2)
    b, _, hb = fit_small(digits.train[:256], 2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
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
    for (k, va), vb in zip(full.state_dict().items(), model.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    for va, vb in zip(full_opt.velocity, opt.velocity):
        np.testing.assert_array_equal(va, vb)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(history) == strip(full_hist)


def test_checkpoint_round_trip(digits, tmp_path):
    model, opt, history = fit_small(digits.train[:128], 1)
    path = tmp_path / "c.npz"
    train.save_checkpoint(path, model, opt, 1, history, {"note": "x"}, seed=0)
    fresh, fresh_opt, _ = make_run(seed=1)
    meta = train.load_checkpoint(path, fresh, fresh_opt)    # a copy: exact
    assert meta["epoch"] == 1 and meta["config"] == {"note": "x"} and meta["history"] == history
    for (k, va), vb in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
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


# ---- command line ----------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--alpha", "0"], "--alpha must be > 0"),
    (["--alpha", "x"], "invalid float value"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--resolution", "4"], "--resolution must be >= 8"),
    (["--dataset", "mnist"], "invalid choice"),
    (["--model", "resnet50"], "unknown model 'resnet50'"),
    (["--model", "efficientnet_b0", "--alpha", "0.5"], "no width multiplier"),
    (["--resume", "/nonexistent.npz"], "no such file"),
    (["--bogus"], "unrecognized arguments"),
])
def test_cli_bad_options_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_bad_option_prints_no_traceback():
    r = subprocess.run([sys.executable, "-m", "tinymobilenet.train", "--lr", "-1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "python -m tinymobilenet.train: error: --lr must be > 0, got -1.0"


def test_cli_writes_metrics_and_checkpoint_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--resolution", "8", "--epochs", "1", "--batch-size", "128", "--out", str(out),
            "--progress", "none"]
    assert train.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and len(metrics["history"]) == 1
    assert metrics["config"]["resolution"] == 8 and metrics["wall_time_seconds"] > 0
    assert metrics["macs"] > 0 and metrics["params"] > 0
    meta = train.load_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] == 1 and meta["config"] == metrics["config"]
    # a finished run resumed does no more epochs and reports the same accuracy
    assert train.main(["--resume", str(out / "checkpoint.npz"), "--progress", "none"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert "test accuracy" in capsys.readouterr().out
