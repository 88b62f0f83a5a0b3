"""Count the work one solve dispatches: kernel launches on a GPU, operations dispatched on a CPU.

``count_launches(prepared, device)`` runs ONE extra, untimed ``run()`` + ``sync()`` of a prepared
solve and returns ``(count, method)``; ``method`` says exactly what was counted and goes into the
results column ``launch_counter``. ``count`` is None (and ``method`` starts with
"not measurable:") when nothing trustworthy can be counted. Call it after the timed repeats, so
that compilation and tracing are over and only the steady-state dispatches are seen.

What is counted:

* ``device == "gpu"``, any backend: device kernels *measured* with CUPTI, through
  ``cupti-python`` when it imports, else through ``torch.profiler`` with CUDA activities (its
  Kineto layer subscribes to CUPTI for the whole process, so it records kernels launched by any
  library: CuPy, JAX/XLA, Numba, torch). Memory copies and memsets are not kernels and are not
  counted.
* ``device == "cpu"``, by the prepared's ``dispatch``:

  - ``"xp"``: array operations dispatched through the prepared's namespace ``prepared.xp``
    (NumPy only). The namespace is swapped for a counting proxy and the prepared's NumPy array
    attributes for counting views, so every computing operation counts once: each ufunc
    application (``a * b``, ``-a``, ``a > b``, ``xp.sqrt(a)``, reductions such as ``xp.any``),
    each namespace function call (``xp.where``, ``xp.stack``, ``xp.mean``,
    ``xp.linalg.solve``, ``xp.zeros``, ...), each ``a[...] = v`` and each advanced-index read
    ``a[mask]``. Views and no-copy conversions are free (basic indexing, ``.T``, ``reshape``,
    ``broadcast_to``, ``asarray``, ``empty``), as are host conversions (``float(a)``,
    ``bool(a)``): on a GPU none of these launches a kernel. An operation whose implementation
    runs further NumPy operations counts once (nesting is not counted). Operations on Python
    scalars (host arithmetic) are not counted.
  - ``"torch"``: ATen operators reaching ``TorchDispatchMode`` (after autograd and composite
    decompositions), excluding pure view operators (``is_view``: ``view``, ``t``, ``select``...).
  - ``"kernel"``: calls through the prepared's compiled entry point: every attribute of the
    prepared that is a Numba dispatcher, or is named ``kernel``, is wrapped and its calls counted
    (a fused solver shows 1 per solve). ``run()`` must call the kernel through that attribute.
  - ``"jax"``: calls of the prepared's jitted callables (attributes with a ``lower`` method from
    JAX or Equinox, or named ``jitted``): one compiled-executable dispatch each. Eager ``jax.numpy``
    operations outside them are not counted.
  - anything else: not measurable.
"""
from __future__ import annotations

import threading
import types
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np

DEVICES = ("cpu", "gpu")


def count_launches(prepared: Any, device: str) -> tuple[int | None, str]:
    """Run one extra untimed solve of ``prepared`` on ``device`` and count what it dispatches.

    Args:
        prepared: a ``solvers.base.Prepared`` (anything with ``run``, ``sync`` and ``dispatch``).
        device: "cpu" or "gpu", the device the prepared solve runs on.

    Returns:
        ``(count, method)``: ``count`` is the number of launches / operations of one solve, or
        None when they cannot be measured; ``method`` says what was counted (or why not).
    """
    if device not in DEVICES:
        raise ValueError(f"invalid device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "gpu":
        return _count_gpu_kernels(prepared)
    dispatch = getattr(prepared, "dispatch", None)
    if dispatch == "xp":
        return _count_xp_operations(prepared)
    if dispatch == "torch":
        return _count_aten_operators(prepared)
    if dispatch == "kernel":
        return _count_entry_point_calls(prepared, _is_kernel_entry, "kernel",
                                        "calls of the compiled kernel entry point")
    if dispatch == "jax":
        return _count_entry_point_calls(
            prepared, _is_jitted_entry, "jitted",
            "calls of the prepared's jitted callables (compiled-executable dispatches; eager "
            "jax.numpy operations outside them are not counted)")
    return None, (f"not measurable: dispatch {dispatch!r} has no CPU operation counter "
                  f"(counted: xp, torch, kernel, jax)")


def _run_once(prepared: Any) -> None:
    """The timed region of a solve (run + sync), here run untimed for counting."""
    out = prepared.run()
    prepared.sync(out)


# =================================================================================================
# GPU: device kernels measured with CUPTI
# =================================================================================================

def _count_gpu_kernels(prepared: Any) -> tuple[int | None, str]:
    try:
        from cupti import cupti  # noqa: F401  (cupti-python; not on every GPU box)
    except ImportError:
        return _count_kernels_torch_profiler(prepared)
    return _count_kernels_cupti(prepared)


def _count_kernels_cupti(prepared: Any) -> tuple[int | None, str]:
    """Kernels recorded by CUPTI's activity API (CONCURRENT_KERNEL records) through cupti-python.

    If CUPTI refuses the subscription (another profiler holds it), torch.profiler is tried.
    """
    from cupti import cupti  # cupti-python is optional: without it torch.profiler counts

    kinds: list[int] = []

    def buffer_requested():
        # (buffer size in bytes, max records: 0 = as many as fit)
        return 8 * 1024 * 1024, 0

    def buffer_completed(activities):
        kinds.extend(int(a.kind) for a in activities)

    try:
        kernel_kind = int(cupti.ActivityKind.CONCURRENT_KERNEL)
        cupti.activity_register_callbacks(buffer_requested, buffer_completed)
        cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
    except Exception as exc:  # noqa: BLE001 - any CUPTI refusal: use the other profiler
        count, method = _count_kernels_torch_profiler(prepared)
        return count, f"{method} [cupti-python failed: {type(exc).__name__}: {exc}]"
    try:
        _run_once(prepared)
    finally:
        cupti.activity_flush_all(1)  # 1 = forced: hand back partially filled buffers too
        cupti.activity_disable(cupti.ActivityKind.CONCURRENT_KERNEL)
    return sum(k == kernel_kind for k in kinds), (
        "gpu: device kernels measured by CUPTI (cupti-python, CONCURRENT_KERNEL activity records)")


def _count_kernels_torch_profiler(prepared: Any) -> tuple[int | None, str]:
    """Kernels recorded by torch.profiler (Kineto over CUPTI), launched by any library."""
    try:
        # torch is optional: without it (and cupti-python) kernels are not measurable
        import torch
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile
    except ImportError as exc:
        return None, f"not measurable: neither cupti-python nor torch is importable ({exc})"
    if not torch.cuda.is_available():
        return None, "not measurable: torch sees no CUDA device, so its profiler cannot record kernels"
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        _run_once(prepared)
    count = sum(1 for e in prof.events() if _is_kernel_event(e, DeviceType.CUDA))
    return count, ("gpu: device kernels measured by torch.profiler (Kineto/CUPTI, CUDA kernel "
                   "events of every library in the process; memcpy/memset excluded)")


def _is_kernel_event(event: Any, cuda: Any) -> bool:
    """True for a CUDA kernel event (not a memcpy / memset, which Kineto also records on the GPU)."""
    if event.device_type != cuda:
        return False
    activity = getattr(event, "activity_type", None)
    if activity:  # newer torch: Kineto's activity name, "kernel" for CONCURRENT_KERNEL records
        return activity == "kernel"
    return not event.name.startswith(("Memcpy", "Memset"))


# =================================================================================================
# CPU, dispatch "xp": NumPy operations through a counting namespace
# =================================================================================================

class _OperationCounter:
    """Counts top-level operations; nested ones (an operation running others inside) are not."""

    def __init__(self) -> None:
        self.count = 0
        self.depth = 0


_state = threading.local()


def _active() -> _OperationCounter | None:
    return getattr(_state, "counter", None)


@contextmanager
def _operation(counted: bool = True):
    """Enter one operation: counts it if a counter is active and we are not inside another."""
    counter = _active()
    if counter is None:
        yield
        return
    if counted and counter.depth == 0:
        counter.count += 1
    counter.depth += 1
    try:
        yield
    finally:
        counter.depth -= 1


@contextmanager
def counting_operations():
    """Activate a fresh operation counter for this thread; yields it (read ``.count`` after)."""
    previous = _active()
    counter = _OperationCounter()
    _state.counter = counter
    try:
        yield counter
    finally:
        _state.counter = previous


#: NumPy functions that make views or no-copy conversions, or only allocate: no kernel on a GPU.
FREE_FUNCTIONS = frozenset({
    "asarray", "asanyarray", "ascontiguousarray", "broadcast_to", "broadcast_arrays", "reshape",
    "transpose", "moveaxis", "swapaxes", "expand_dims", "squeeze", "atleast_1d", "atleast_2d",
    "atleast_3d", "shape", "ndim", "size", "result_type", "can_cast", "promote_types", "empty",
    "empty_like", "may_share_memory", "shares_memory", "iterable", "isscalar",
})


def _plain(x: Any) -> Any:
    """``x`` with every CountingArray (also inside lists, tuples, dicts) viewed as a plain ndarray."""
    if isinstance(x, CountingArray):
        return x.view(np.ndarray)
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _counting(x: Any) -> Any:
    """``x`` with every plain ndarray (also inside lists and tuples) viewed as a CountingArray."""
    if type(x) is np.ndarray:
        return x.view(CountingArray)
    if isinstance(x, tuple):
        return tuple(_counting(v) for v in x)
    if isinstance(x, list):
        return [_counting(v) for v in x]
    return x


def _is_advanced_index(key: Any) -> bool:
    """True when indexing with ``key`` gathers (arrays, lists, masks) instead of making a view."""
    parts = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in parts)


class CountingArray(np.ndarray):
    """A NumPy array whose computing operations count into the active operation counter.

    Views of it (basic indexing, ``.T``, ``reshape``) are CountingArrays too; every result of an
    operation on it is one. Outside ``counting_operations()`` it behaves as a plain ndarray.
    """

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        with _operation():
            result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _counting(result)

    def __array_function__(self, func, types, args, kwargs):
        with _operation(counted=func.__name__ not in FREE_FUNCTIONS):
            result = super().__array_function__(func, (np.ndarray,), _plain(args), _plain(kwargs))
        return _counting(result)

    def __getitem__(self, key):
        with _operation(counted=_is_advanced_index(_plain(key))):
            result = super().__getitem__(_plain(key))
        return _counting(result)

    def __setitem__(self, key, value):
        with _operation():
            super().__setitem__(_plain(key), _plain(value))

    def astype(self, *args, **kwargs):
        with _operation():
            return _counting(self.view(np.ndarray).astype(*args, **kwargs))

    def copy(self, *args, **kwargs):
        with _operation():
            return _counting(self.view(np.ndarray).copy(*args, **kwargs))


class CountingNamespace(types.ModuleType):
    """A stand-in for a NumPy-like module: each computing function call counts once.

    Submodules (``linalg``) are wrapped too; ufuncs are handed out as they are (they count through
    ``CountingArray.__array_ufunc__`` when an operand is an array; on Python scalars they are
    host arithmetic); types and constants pass through. Arrays returned are CountingArrays.
    """

    def __init__(self, module: types.ModuleType) -> None:
        super().__init__(f"{module.__name__}+launch-count", module.__doc__)
        self._module = module

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._module, name)
        if isinstance(attr, types.ModuleType):
            return CountingNamespace(attr)
        if isinstance(attr, (type, np.ufunc)) or not callable(attr):
            return attr
        return _counted_function(attr, counted=name not in FREE_FUNCTIONS)


def _counted_function(fn: Callable, counted: bool) -> Callable:
    def call(*args, **kwargs):
        with _operation(counted=counted):
            result = fn(*_plain(args), **_plain(kwargs))
        return _counting(result)

    call.__name__ = getattr(fn, "__name__", "function")
    call.__doc__ = getattr(fn, "__doc__", None)
    return call


def _count_xp_operations(prepared: Any) -> tuple[int | None, str]:
    xp = getattr(prepared, "xp", None)
    if xp is not np:
        name = getattr(xp, "__name__", type(xp).__name__)
        return None, f"not measurable: CPU operation counting needs prepared.xp to be numpy (got {name})"
    swapped = _swap_attributes(prepared, lambda name, v: type(v) is np.ndarray,
                               lambda name, v: v.view(CountingArray))
    swapped["xp"] = prepared.__dict__.get("xp", _CLASS_ATTRIBUTE)
    prepared.xp = CountingNamespace(np)
    try:
        with counting_operations() as counter:
            _run_once(prepared)
    finally:
        _restore_attributes(prepared, swapped)
    return counter.count, ("cpu: NumPy array operations dispatched through prepared.xp (ufunc "
                           "calls incl. operators and reductions, namespace functions, setitem, "
                           "advanced-index reads; views/allocations free)")


# =================================================================================================
# CPU, dispatch "torch": ATen operators
# =================================================================================================

def _count_aten_operators(prepared: Any) -> tuple[int | None, str]:
    try:
        from torch.utils._python_dispatch import TorchDispatchMode  # torch is optional: else not measurable
    except ImportError as exc:
        return None, f"not measurable: torch is not importable ({exc})"

    class AtenCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not getattr(func, "is_view", False):
                self.count += 1
            return func(*args, **(kwargs or {}))

    with AtenCounter() as counter:
        _run_once(prepared)
    return counter.count, ("cpu: ATen operators dispatched (TorchDispatchMode, view operators "
                           "excluded)")


# =================================================================================================
# CPU, dispatch "kernel" / "jax": calls through the prepared's compiled entry points
# =================================================================================================

def _is_kernel_entry(name: str, value: Any) -> bool:
    if not callable(value) or isinstance(value, type):
        return False
    return name == "kernel" or type(value).__module__.startswith("numba")


def _is_jitted_entry(name: str, value: Any) -> bool:
    if not callable(value) or isinstance(value, type):
        return False
    if name == "jitted":
        return True
    module = type(value).__module__
    return hasattr(value, "lower") and (module.startswith(("jax", "jaxlib", "equinox")))


class _CallCounter:
    """Wraps a callable entry point; counts calls, including launch configurations ``k[g, b](...)``."""

    def __init__(self, target: Any, tally: list[int]) -> None:
        self._target = target
        self._tally = tally

    def __call__(self, *args, **kwargs):
        self._tally[0] += 1
        return self._target(*args, **kwargs)

    def __getitem__(self, config):
        # A CUDA launch configuration returns a new callable: count its calls as well.
        return _CallCounter(self._target[config], self._tally)

    def __getattr__(self, name):
        return getattr(self._target, name)


def _count_entry_point_calls(prepared: Any, is_entry: Callable[[str, Any], bool], what: str,
                             description: str) -> tuple[int | None, str]:
    tally = [0]
    swapped = _swap_attributes(prepared, is_entry, lambda name, v: _CallCounter(v, tally))
    if not swapped:
        return None, (f"not measurable: the prepared holds no {what} entry point as an attribute "
                      f"(run() must call it through self.<attribute>)")
    try:
        _run_once(prepared)
    finally:
        _restore_attributes(prepared, swapped)
    if tally[0] == 0:
        return None, (f"not measurable: the solve made no call through the prepared's {what} "
                      f"attributes ({', '.join(sorted(swapped))})")
    return tally[0], f"cpu: {description}"


# ---- temporarily replacing attributes of a prepared --------------------------------------------

_CLASS_ATTRIBUTE = object()  # marks "was not an instance attribute": restore by deleting


def _candidate_attributes(prepared: Any) -> dict[str, Any]:
    """Instance attributes, then class attributes not shadowed by them (entry points may be either)."""
    found = dict(vars(prepared))
    for klass in type(prepared).__mro__:
        for name in vars(klass):
            if name.startswith("__") or name in found:
                continue
            try:
                found[name] = getattr(prepared, name)
            except Exception:  # noqa: BLE001 - a property that fails is not an entry point
                continue
    return found


def _swap_attributes(prepared: Any, select: Callable[[str, Any], bool],
                     replace: Callable[[str, Any], Any]) -> dict[str, Any]:
    """Replace each attribute ``select`` picks by ``replace(name, value)``; return what to restore."""
    swapped: dict[str, Any] = {}
    own = vars(prepared)
    for name, value in _candidate_attributes(prepared).items():
        try:
            chosen = select(name, value)
        except Exception:  # noqa: BLE001 - an odd attribute is simply not an entry point
            chosen = False
        if chosen:
            swapped[name] = own.get(name, _CLASS_ATTRIBUTE)
            setattr(prepared, name, replace(name, value))
    return swapped


def _restore_attributes(prepared: Any, swapped: dict[str, Any]) -> None:
    for name, original in swapped.items():
        if original is _CLASS_ATTRIBUTE:
            vars(prepared).pop(name, None)
        else:
            setattr(prepared, name, original)
