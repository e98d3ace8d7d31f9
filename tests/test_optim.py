"""SGD updates and learning-rate schedules: against the rule written out by hand, and
against torch.optim when torch is installed."""

import math

import numpy as np
import pytest

from tinymobilenet import nn
from tinymobilenet.optim import SGD, Constant, Cosine, StepDecay, Warmup, param_groups

# the chapters these tests back (select with: pytest -m ch09)
pytestmark = [pytest.mark.ch09]



def make_params(seed=0, shapes=((3, 4), (4,))):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s)) for s in shapes]


def grads_for(step, params, seed=0):
    """Deterministic gradients for update number ``step``."""
    rng = np.random.default_rng([seed, step])
    return [rng.standard_normal(p.data.shape) for p in params]


def run_sgd(steps=4, lrs=None, **options):
    params = make_params()
    opt = SGD(params, lr=0.1, **options)
    for t in range(steps):
        for p, g in zip(params, grads_for(t, params)):
            p.grad = g
        if lrs is not None:
            opt.lr = lrs[t]
        opt.step()
    return [p.data for p in params]


def hand_written(steps=4, lr=0.1, momentum=0.0, weight_decay=0.0, nesterov=False):
    """The update of the optim module docstring, one parameter array at a time."""
    ws = [p.data.copy() for p in make_params()]
    vs = [None] * len(ws)
    for t in range(steps):
        for i, g in enumerate(grads_for(t, ws_as_params(ws))):
            g = g + weight_decay * ws[i]
            vs[i] = g if vs[i] is None else momentum * vs[i] + g
            step = g + momentum * vs[i] if nesterov else vs[i]
            if momentum == 0:
                step = g
            ws[i] = ws[i] - lr * step
    return ws


def ws_as_params(ws):
    return [nn.Parameter(w) for w in ws]


@pytest.mark.parametrize("options", [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True},
    {"weight_decay": 0.01},
    {"momentum": 0.8, "weight_decay": 0.05, "nesterov": True},
])
def test_sgd_matches_the_update_written_by_hand(options):
    got = run_sgd(**options)
    want = hand_written(**options)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_plain_sgd_single_step_by_hand():
    p = nn.Parameter(np.array([1.0, -2.0]))
    p.grad = np.array([0.5, 0.25])
    SGD([p], lr=0.1).step()
    # elementwise IEEE arithmetic on exactly representable halvings: exact on any machine
    np.testing.assert_array_equal(p.data, [1.0 - 0.05, -2.0 - 0.025])


def test_momentum_first_step_is_plain_sgd_then_accumulates():
    p = nn.Parameter(np.array([0.0]))
    opt = SGD([p], lr=1.0, momentum=0.5)
    p.grad = np.array([1.0])
    opt.step()                                # v = 1           w = -1
    opt.step()                                # v = 0.5 + 1     w = -2.5
    np.testing.assert_allclose(p.data, [-2.5])


def test_float32_parameters_stay_float32():
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    p.grad = np.ones(3, dtype=np.float32)
    SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True).step()
    assert p.data.dtype == np.float32


def test_param_groups_skip_decay_on_batchnorm_and_biases():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(model, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert names == {"0.weight", "3.weight"}
    assert groups[1]["weight_decay"] == 0.0
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(model.parameters())
    # with zero gradients only the decayed weights move
    opt = SGD(groups, lr=1.0)
    before = model.state_dict()
    model.zero_grad()
    opt.step()
    after = model.state_dict()
    assert not np.array_equal(before["0.weight"], after["0.weight"])
    for key in ("0.bias", "1.weight", "1.bias", "3.bias"):
        np.testing.assert_array_equal(before[key], after[key])
    assert len(param_groups(model, 0.1, decay_norm_and_bias=True)) == 1


def test_state_dict_round_trip_continues_identically():
    full = run_sgd(steps=6, momentum=0.9, nesterov=True, weight_decay=0.01)
    params = make_params()
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    for t in range(3):
        for p, g in zip(params, grads_for(t, params)):
            p.grad = g
        opt.step()
    state = opt.state_dict()
    resumed = SGD(params, lr=0.5)             # hyperparameters come from the state
    resumed.load_state_dict(state)
    assert resumed.step_count == 3 and resumed.nesterov
    for t in range(3, 6):
        for p, g in zip(params, grads_for(t, params)):
            p.grad = g
        resumed.step()
    for a, b in zip(full, params):           # the same updates replayed: bit for bit
        np.testing.assert_array_equal(a, b.data)


def test_load_state_dict_rejects_mismatch():
    opt = SGD(make_params(), lr=0.1, momentum=0.9)
    opt.params[0].grad = np.ones((3, 4))
    opt.params[1].grad = np.ones(4)
    opt.step()
    other = SGD(make_params(shapes=((3, 4),)), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="has 1"):
        other.load_state_dict(opt.state_dict())
    wrong = SGD(make_params(shapes=((3, 4), (5,))), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="shape"):
        wrong.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1}, "lr"), ({"momentum": 1.0}, "momentum"), ({"weight_decay": -0.1}, "weight_decay"),
    ({"nesterov": True}, "nesterov"),
])
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(make_params(), **{"lr": 0.1, **kwargs})


def test_schedules_by_hand():
    assert Constant(0.3)(1000) == 0.3
    s = StepDecay(1.0, step_size=10, gamma=0.5)
    assert [s(t) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    c = Cosine(1.0, total_steps=100, min_lr=0.1)
    assert c(0) == pytest.approx(1.0)
    assert c(50) == pytest.approx(0.55)
    assert c(100) == pytest.approx(0.1) and c(500) == pytest.approx(0.1)
    w = Warmup(Constant(1.0), warmup_steps=4, start_factor=0.2)
    assert [w(t) for t in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    wc = Warmup(Cosine(2.0, 10), warmup_steps=5)
    assert wc(5) == pytest.approx(2.0) and wc(15) == pytest.approx(0.0)
    assert wc(10) == pytest.approx(1.0 + math.cos(math.pi / 2))


# ---- against PyTorch -------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("options", [
    {"momentum": 0.0},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    {"momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1},
])
def test_sgd_matches_torch(options):
    torch = pytest.importorskip("torch")
    lrs = [0.1, 0.05, 0.2, 0.01, 0.1]
    params = make_params()
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = SGD(params, lr=lrs[0], **options)
    topt = torch.optim.SGD(tparams, lr=lrs[0], **options)
    for t, lr in enumerate(lrs):
        for p, tp, g in zip(params, tparams, grads_for(t, params)):
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.lr = lr
        for group in topt.param_groups:
            group["lr"] = lr
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.torch
def test_schedules_match_torch_lr_scheduler():
    torch = pytest.importorskip("torch")
    from torch.optim import lr_scheduler as L

    def torch_lrs(make, steps=40):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    cases = [
        (StepDecay(0.4, 7, 0.5), lambda o: L.StepLR(o, 7, 0.5)),
        (Cosine(0.4, 30, min_lr=0.01), lambda o: L.CosineAnnealingLR(o, 30, eta_min=0.01)),
        (Warmup(Cosine(0.4, 30), 5, start_factor=0.1),
         lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, total_iters=5),
                                      L.CosineAnnealingLR(o, 30)], milestones=[5])),
    ]
    # steps 0..30 only: past T_max torch's cosine rises again, ours stays at min_lr
    for ours, make in cases:
        np.testing.assert_allclose([ours(t) for t in range(31)], torch_lrs(make, 31),
                                   rtol=1e-9, atol=1e-12, err_msg=repr(ours))
