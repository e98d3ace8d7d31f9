"""Parameter, Module and Sequential: the PyTorch-shaped container API.

A Module owns Parameters (trainable arrays with a ``.grad``), buffers (non-trainable
arrays such as BatchNorm's running statistics) and child Modules, registered in the order
they are assigned, so ``state_dict()`` lists keys in the same order as PyTorch does:
a module's own parameters, then its own buffers, then each child's entries.

``forward(x)`` computes the output and caches what ``backward`` needs (nothing inside
``with no_grad():``, :mod:`.grad_mode`); ``backward(dy)`` returns dL/dx and *overwrites*
each parameter's ``.grad`` (calling it twice gives the same result, there is no
accumulation across calls). A layer's backward checks ``dy`` against its forward's
output: the same shape and dtype, or an error naming the layer and both.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Iterator

import numpy as np

from ..functional._checks import check_dout
from . import grad_mode
from .grad_mode import is_grad_enabled

__all__ = ["Parameter", "Module", "Sequential", "DEFAULT_DTYPE", "StateDictError"]

DEFAULT_DTYPE = np.float32

# the tracer of a trace() that runs a container's real forward (see Module._trace)
_tracing = threading.local()


class StateDictError(KeyError, ValueError):
    """A state dict that does not fit the module: a missing or unexpected key, or an entry
    that is not a numeric array of the right shape; the message names the key.

    A ``KeyError`` (what ``load_state_dict`` raised for missing and unexpected keys) and a
    ``ValueError`` (what it raised for wrong shapes), so code catching either still
    does; printed without the quotes KeyError puts around its message."""

    def __str__(self):
        return BaseException.__str__(self)


def _numeric_array(key, value) -> np.ndarray:
    """``value`` of state-dict entry ``key`` as an ndarray of numbers (bool, int, float),
    else a StateDictError naming the key."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:          # e.g. ragged nested lists
        raise StateDictError(f"load_state_dict: key '{key}' is not an array of numbers "
                             f"({type(value).__name__}: {e})") from None
    if array.dtype.kind not in "biuf":
        what = {"O": "Python objects (e.g. None)", "U": "strings", "S": "bytes"}.get(
            array.dtype.kind, f"values of dtype {array.dtype.name}")
        raise StateDictError(f"load_state_dict: key '{key}' holds {what}, expected an "
                             f"array of numbers")
    return array


class Parameter:
    """A trainable array. ``.data`` holds the values, ``.grad`` dL/d(data), same shape."""

    def __init__(self, data):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer, block and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------------------
    def __setattr__(self, name, value):
        if name[0] == "_" and "_parameters" in self.__dict__:
            # private state (caches set by every forward): never a parameter, buffer or
            # child, so it skips the registry (a hot path: ~1 us a layer a call)
            object.__setattr__(self, name, value)
            return
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"assigning attributes"
            )
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._buffers.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name not in self._buffers:       # re-assigning a buffer keeps it a buffer
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray) -> None:
        """Register a non-trainable array (saved in ``state_dict``, cast by ``to``)."""
        self._buffers[name] = None
        object.__setattr__(self, name, array)

    def add_module(self, name: str, module: "Module") -> None:
        """Register ``module`` as the child ``name`` (what ``self.name = module`` does)."""
        setattr(self, name, module)

    # ---- the computation ---------------------------------------------------------------
    def forward(self, x):
        """The output y of input x; caches what :meth:`backward` needs (nothing inside
        ``no_grad()``). Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy):
        """dL/dx from dy = dL/dy (the last forward's output shape and dtype); overwrites
        each parameter's ``.grad``. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        tracer = getattr(_tracing, "tracer", None)
        if tracer is None:
            if is_grad_enabled():
                return self.forward(x)
            return grad_mode.forward(self, x)          # may split the batch over threads
        # a real forward run by trace() for a container without _trace: record the call
        tracer.enter(self, tuple(x.shape))
        y = self.forward(x)
        tracer.exit(self, tuple(x.shape), tuple(y.shape))
        return y

    # ---- shapes only ------------------------------------------------------------------
    def output_shape(self, input_shape) -> tuple:
        """The output shape for an input of ``input_shape``, with nothing computed (the
        error ``forward`` would raise for a wrong input is raised here too). Leaves define
        it; a container's is its children's, composed by :meth:`trace`."""
        if self._modules:
            return self.trace(input_shape)
        raise NotImplementedError(f"{self._label()} does not define output_shape")

    def trace(self, input_shape, tracer=None) -> tuple:
        """Walk this module the way ``forward`` runs it, with shapes instead of arrays, and
        return the output shape. ``tracer`` (optional) sees every module:
        ``tracer.enter(module, input_shape)`` before its children,
        ``tracer.exit(module, input_shape, output_shape)`` after them. This is how
        :mod:`tinymobilenet.count` counts a model without running a kernel."""
        shape = tuple(int(v) for v in input_shape)
        if tracer is not None:
            tracer.enter(self, shape)
        out = tuple(int(v) for v in self._trace(shape, tracer))
        if tracer is not None:
            tracer.exit(self, shape, out)
        return out

    def _trace(self, shape, tracer):
        """Forward's shape routing: a leaf returns its :meth:`output_shape`; a container
        overrides this to pass the shape through ``child.trace(shape, tracer)`` in the
        order its forward calls the children. A container that does not (a model of your
        own, say) is run for real on zeros instead, and the children its forward calls
        (``child(x)``) are recorded as they run: slower, the same counts."""
        if not self._modules:
            return self.output_shape(shape)
        params = self.parameters()
        dtype = params[0].data.dtype if params else DEFAULT_DTYPE
        previous = getattr(_tracing, "tracer", None)
        _tracing.tracer = tracer
        try:
            return self.forward(np.zeros(shape, dtype=dtype)).shape
        finally:
            _tracing.tracer = previous

    @staticmethod
    def _keep(cache):
        """What a forward pass stores for backward: ``cache``, or None inside ``no_grad()``
        (nothing will run backward, and the arrays it holds can be freed at once)."""
        return cache if is_grad_enabled() else None

    def _forget(self):
        """Drop what earlier forward passes of this module and its children cached, for a
        ``no_grad()`` pass that computes their output without calling their forward: a
        stale cache would let backward run on another input instead of raising. (A plain
        recursion, not ``modules()``, whose dotted names cost ~0.5 ms an EfficientNet-B0
        forward pass.)"""
        if self.__dict__.get("_cache") is not None:
            self._cache = None
        for child in self._modules.values():
            child._forget()

    def _cached(self, cache, what="backward"):
        """Return ``cache`` or raise a clear error if forward has not run yet (or ran
        inside ``no_grad()``, which keeps nothing)."""
        if cache is None:
            raise RuntimeError(
                f"{self._label()}: {what} called before forward (nothing cached; a forward "
                f"inside no_grad() keeps nothing)"
            )
        return cache

    def _keep_output(self, y):
        """Remember the shape and dtype of this forward's output ``y`` (nothing inside
        ``no_grad()``) for :meth:`_check_dy`; returns y."""
        self._y_spec = (y.shape, y.dtype) if is_grad_enabled() else None
        return y

    def _check_dy(self, dy):
        """``dy`` if it is an array of the last forward's output shape and dtype (kept by
        :meth:`_keep_output`), else an error naming this layer, e.g. ``Conv2d(3->4): dy
        must have the shape of the forward's output (2, 4, 8, 8), got (2, 4, 4, 4)``."""
        spec = self.__dict__.get("_y_spec")
        if spec is None:
            return dy
        return check_dout(self, dy, spec[0], spec[1], name="dy", strict=True)

    def _label(self) -> str:
        """Short name used in error messages, e.g. ``Conv2d(32->64)``."""
        return type(self).__name__

    # ---- traversal ---------------------------------------------------------------------
    def children(self) -> Iterator["Module"]:
        """The direct child modules, in registration order."""
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(dotted name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        """This module and every descendant, depth first."""
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted PyTorch-style name, Parameter) pairs, e.g. ``features.0.0.weight``."""
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self) -> list[Parameter]:
        """Every Parameter of this module and its descendants, in state-dict order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """(dotted name, array) of every buffer, e.g. ``features.0.1.running_mean``."""
        for name in self._buffers:
            yield (f"{prefix}.{name}" if prefix else name), getattr(self, name)
        for name, child in self._modules.items():
            yield from child.named_buffers(f"{prefix}.{name}" if prefix else name)

    # ---- modes and grads ---------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set ``training`` to ``mode`` on this module and every descendant; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """``train(False)``: BatchNorm uses its running statistics, dropout is off."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to zeros (``backward`` overwrites them anyway)."""
        for p in self.parameters():
            p.grad = np.zeros_like(p.data)

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.data.size for p in self.parameters()))

    # ---- state ------------------------------------------------------------------------
    def _state_items(self, prefix=""):
        """(key, owner module, attribute name, is_parameter) in PyTorch state_dict order."""
        for name in self._parameters:
            yield (f"{prefix}{name}", self, name, True)
        for name in self._buffers:
            yield (f"{prefix}{name}", self, name, False)
        for cname, child in self._modules.items():
            yield from child._state_items(f"{prefix}{cname}.")

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """{name: array} of parameters and buffers (copies), in PyTorch's key order."""
        out = OrderedDict()
        for key, owner, name, is_param in self._state_items():
            value = getattr(owner, name)
            out[key] = (value.data if is_param else value).copy()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        ``state_dict``: a mapping {name (str): numeric array}, e.g. another model's
        ``state_dict()``. ``num_batches_tracked`` entries are accepted and may be absent.
        With ``strict``, a missing or unexpected key raises :class:`StateDictError`
        naming it (a ``KeyError``, as before, and a ``ValueError``); an entry that is not
        a numeric array (strings, objects, None) or is wrongly shaped always raises it,
        naming the key (and both shapes). Nothing is loaded unless every entry is good.
        Values are cast to the dtype of the parameter they replace. Returns
        ``(missing, unexpected)`` lists.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping {{name: array}} such as "
                            f"model.state_dict(), got {type(state_dict).__name__}")
        for key in state_dict:
            if not isinstance(key, str):
                raise TypeError(f"load_state_dict: keys must be parameter names (str), got "
                                f"{key!r} ({type(key).__name__})")
        items = {key: (owner, name, is_param) for key, owner, name, is_param in self._state_items()}
        optional = {k for k in items if k.endswith("num_batches_tracked")}
        missing = [k for k in items if k not in state_dict and k not in optional]
        unexpected = [k for k in state_dict if k not in items
                      and not k.endswith("num_batches_tracked")]
        if strict and missing:
            raise StateDictError(
                f"load_state_dict: missing key '{missing[0]}'"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if strict and unexpected:
            raise StateDictError(
                f"load_state_dict: unexpected key '{unexpected[0]}'"
                + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            )
        loads = []                      # every entry checked before anything is loaded
        for key, value in state_dict.items():
            if key not in items:
                continue
            owner, name, is_param = items[key]
            current = getattr(owner, name)
            target = current.data if is_param else current
            value = _numeric_array(key, value)
            if value.shape != target.shape:
                raise StateDictError(
                    f"load_state_dict: key '{key}' has shape {value.shape}, "
                    f"expected {target.shape}"
                )
            loads.append((owner, name, is_param, current, value.astype(target.dtype, copy=True)))
        for owner, name, is_param, current, new in loads:
            if is_param:
                current.data = new
                current.grad = np.zeros_like(new)
            else:
                object.__setattr__(owner, name, new)
        return missing, unexpected

    def to(self, dtype) -> "Module":
        """Cast every floating parameter, gradient and buffer to ``dtype``; returns self."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = p.grad.astype(dtype)
            for name in m._buffers:
                buf = getattr(m, name)
                if np.issubdtype(buf.dtype, np.floating):
                    object.__setattr__(m, name, buf.astype(dtype))
        return self

    # ---- printing ----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                sub = repr(child).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is {type(m).__name__}, not a Module")
            self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        if not is_grad_enabled():
            from .fusion import forward_fused     # no backward to feed: BN + activation fused
            return forward_fused(self, x)
        for m in self._modules.values():
            x = m(x)
        return x

    def _trace(self, shape, tracer):
        for m in self._modules.values():
            shape = m.trace(shape, tracer)
        return shape

    def backward(self, dy):
        for m in reversed(self._modules.values()):
            dy = m.backward(dy)
        return dy
