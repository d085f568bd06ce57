"""Checks across a wall: the learner's answer lives in a kernel, the verdict in the grader.

``python -m tfcore grade`` runs a notebook in a sandboxed kernel. There, ``check(ID, answer)``
only records the answer (``record``). The grader then runs each check function in its *own*
process, with the answer replaced by a ``Proxy``: calling it, reading an attribute or an item
sends a request to the kernel (``serve`` answers it there) and brings the result back as
plain data. Nothing the kernel sends is ever executed or unpickled by the grader:

- results are JSON: None, bool, int, float, str, and tagged lists, tuples and dicts of them;
  tensors and arrays as ``.npy`` bytes read with ``allow_pickle=False`` and rebuilt as fresh
  base ``torch.Tensor`` / ``np.ndarray`` objects (a tensor subclass or a custom ``__eq__``
  cannot survive the trip); any other object stays in the kernel and comes back as a new
  ``Proxy`` (a model instance, a bound method);
- arguments go the same way to the kernel, which rebuilds tensors with their strides (a
  transposed view stays a view); a function or ``nn.Module`` of the check's own becomes a
  kernel-side stub whose calls are answered by the grader (``ask``, over Jupyter's stdin
  channel); a module the learner must hold for real (hooks, ``deepcopy``, training) is
  rebuilt in the kernel from plain data: ``Checker.share(module, builder, *args)`` names a
  ``tfcore`` builder, and its weights travel as a state dict.

The transport is pluggable: ``tfcore.grading.sandbox.Kernel`` (a Jupyter kernel) in the
grader, ``Loopback`` (the "kernel" in the same process, the messages still serialised) in
tests. Kernel-reported facts other than results (in-place changes of inputs, hooks left on a
model, reductions seen by a monitor) are used for feedback; a hostile kernel can lie about
them, but not about the values a check compares.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import itertools
import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from numpy.lib import format as npy_format

CALLBACK_PREFIX = "tfcore-callback:"
# A reply larger than this is refused. Grading the ten solution notebooks, the largest reply (a model's state
# dict) is 4.3 MB and the largest callback 743 characters.
MAX_MESSAGE_CHARS = 64_000_000
MAX_NODES = 200_000  # values per message
# Commas and opening brackets per message, counted before parsing: each becomes a Python object, so a hostile
# reply of "[],[],..." cannot make json.loads build a billion objects (90 MB of it took 2.4 GB) in the grader.
MAX_STRUCTURE = 4 * MAX_NODES
MAX_CALLBACK_CHARS = 8_000_000  # arguments of one call of a check's own function, as JSON
# Numbers (tensor and array elements) per call of a check's own function: some are quadratic in their input
# (attention over T tokens allocates T x T scores), and they run in the grader.
MAX_CALLBACK_ELEMENTS = 2 ** 15
MAX_DEPTH = 40  # nesting of containers
_DTYPES = {
    "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
    "int64": torch.int64, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "complex64": torch.complex64, "complex128": torch.complex128,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_ARRAY_KINDS = "biufcU"  # NumPy dtype kinds that may travel (never objects or records)


class Malformed(ValueError):
    """Data from the kernel that is not in the protocol's form."""


class KernelUnavailable(Exception):
    """The kernel could not answer a request: it died, timed out, or sent something unreadable.

    ``reason`` completes "the kernel ..."; ``kind`` is "timeout", "died" or "malformed".
    """

    def __init__(self, reason: str, kind: str = "died") -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


# ----------------------------------------------------------------------------- shared helpers


def _npy_bytes(array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _npy_load(text: Any) -> np.ndarray:
    """An array from ``.npy`` bytes (base64): never pickle, and never more memory than the bytes hold."""
    if not isinstance(text, str):
        raise Malformed("array data is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
        buf = io.BytesIO(raw)
        version = npy_format.read_magic(buf)
        read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}[version]
        shape, _, dtype = read_header(buf)
        if dtype.hasobject or int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > len(raw):
            raise ValueError("the header does not match the data")
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:
        raise Malformed(f"unreadable array data ({type(e).__name__})") from None
    if not isinstance(array, np.ndarray) or array.dtype.hasobject or array.dtype.fields is not None \
            or array.dtype.kind not in _ARRAY_KINDS:
        raise Malformed(f"arrays of dtype {getattr(array, 'dtype', '?')} cannot travel")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.array(array, copy=True)


def _resolve(path: str) -> Any:
    """"package.module:Qual.name" -> the object."""
    module, _, qualname = str(path).partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def path_of(obj: Any) -> str:
    """The importable "module:qualname" of a function or class (refused for lambdas and closures)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise ValueError(f"{obj!r} is not importable by name: use a module-level function or class")
    return f"{module}:{qualname}"


def module_types(obj: Any) -> list[tuple[str, str]]:
    """(name, "module.QualName") of ``obj`` and every submodule, in ``named_modules`` order."""
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(obj).__name__}")
    return [(name, f"{type(m).__module__}.{type(m).__qualname__}") for name, m in obj.named_modules()]


def hook_count(obj: Any) -> int:
    """Forward (pre-)hooks registered on ``obj`` and its submodules."""
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(obj).__name__}")
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in obj.modules())


def state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """A detached copy of ``obj.state_dict()``."""
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(obj).__name__}")
    return {k: v.detach().clone() for k, v in obj.state_dict().items()}


def parameter_names(obj: Any) -> list[str]:
    """The names of ``obj``'s parameters, as ``named_parameters`` gives them (buffers are not parameters)."""
    if not isinstance(obj, torch.nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(obj).__name__}")
    return [name for name, _ in obj.named_parameters()]


INSPECTIONS: dict[str, Callable[[Any], Any]] = {
    "module_types": module_types, "hook_count": hook_count, "state_dict": state_dict,
    "parameter_names": parameter_names,
}


def transformer(config: dict) -> torch.nn.Module:
    """A ``tfcore.model.Transformer`` from its config as a dict (the builder of ``Checker.share``)."""
    from tfcore.model import Transformer, TransformerConfig

    return Transformer(TransformerConfig(**config))


# ----------------------------------------------------------------------------- kernel side

_ANSWERS: dict[str, tuple[int, Any]] = {}  # exercise ID -> (version, answer): the last check() call wins
_VERSIONS = itertools.count(1)
_HANDLES: dict[int, Any] = {}  # objects the grader holds a Proxy for
_REFS = itertools.count(1)


def record(exercise_id: str, answer: Any) -> None:
    """Keep ``answer`` for the grader (``check`` calls this inside a grader's kernel)."""
    _ANSWERS[str(exercise_id)] = (next(_VERSIONS), answer)


class _Reply:
    """The kernel's answer, shown by IPython as its bare text (it travels in ``user_expressions``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)


def serve(text: str, ask: Callable[[str], str] | None = None) -> _Reply:
    """Answer one grader request (JSON text); ``ask`` sends a callback request and returns the reply."""
    try:
        request = json.loads(text)
        reply = _dispatch(request, ask or _jupyter_ask)
        out = json.dumps(reply, allow_nan=True)
    except KeyboardInterrupt:
        out = json.dumps({"error": "interrupted"})
    except BaseException as e:  # noqa: BLE001  the grader gets a reason, never a traceback
        out = json.dumps({"error": f"{type(e).__name__}: {_short(e)}"})
    return _Reply(out)


def _short(e: BaseException, limit: int = 300) -> str:
    try:
        text = " ".join(str(e).split())
    except Exception:  # noqa: BLE001
        text = "(unprintable)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jupyter_ask(text: str) -> str:
    from IPython import get_ipython

    return get_ipython().kernel.raw_input(CALLBACK_PREFIX + text)


def _raised(e: BaseException) -> dict:
    return {"raised": {"type": type(e).__name__, "message": _short(e),
                       "not_implemented": isinstance(e, NotImplementedError),
                       "interrupted": isinstance(e, KeyboardInterrupt)}}


@dataclass
class _Context:
    ask: Callable[[str], str]
    built: dict = field(default_factory=dict)


def _dispatch(req: dict, ask: Callable[[str], str]) -> dict:
    op = req.get("op")
    ctx = _Context(ask)
    if op == "hello":
        return {"hello": 1}
    if op == "answers":
        return {"answers": [[k, v] for k, (v, _) in _ANSWERS.items()]}
    if op == "answer":
        entry = _ANSWERS.get(str(req.get("id")))
        return {"missing": True} if entry is None else {"value": _enc(entry[1])}
    if op == "release":
        _HANDLES.clear()
        return {}
    if op == "call":
        return _call(req, ctx)
    if op in ("getattr", "getitem", "inspect"):
        obj = _dec(req["obj"], ctx)
        try:
            if op == "getattr":
                value = getattr(obj, str(req["name"]))
            elif op == "getitem":
                value = obj[_dec(req["key"], ctx)]
            else:
                value = INSPECTIONS[str(req["what"])](obj)
        except Exception as e:  # noqa: BLE001
            return {**_raised(e), "built": ctx.built}
        return {"value": _enc(value), "built": ctx.built}
    raise ValueError(f"unknown request {op!r}")


def _call(req: dict, ctx: _Context) -> dict:
    fn = _dec(req["fn"], ctx)
    args = [_dec(a, ctx) for a in req.get("args", [])]
    kwargs = {str(k): _dec(v, ctx) for k, v in req.get("kwargs", {}).items()}
    labels = [f"argument {i + 1}" for i in range(len(args))] + list(kwargs)
    snapshots = [snapshot(a) for a in (*args, *kwargs.values())]
    spec = req.get("monitor")
    monitor = _resolve(spec["cls"])(*[_dec(a, ctx) for a in spec.get("args", [])]) if spec else None
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as in an inline check: one fixed summation order
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with monitor if monitor is not None else contextlib.nullcontext():
                out = fn(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001  SystemExit and KeyboardInterrupt included
        return {**_raised(e), "built": ctx.built}
    finally:
        torch.set_num_threads(threads)
    changed = [label for label, value, snap in zip(labels, (*args, *kwargs.values()), snapshots)
               if snap is not None and not unchanged(value, snap)]
    reply = {"value": _enc(out), "changed": changed, "built": ctx.built}
    if monitor is not None:
        reply["monitor"] = _enc(monitor.report())
    return reply


def snapshot(x: Any) -> Any:
    """A copy of a tensor or array argument (None for anything else), to see later whether a call changed it."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    return None


def unchanged(x: Any, snap: Any) -> bool:
    """True when ``x`` still equals its ``snapshot`` (same shape, same values, NaN equal to NaN)."""
    if isinstance(x, torch.Tensor):
        return x.shape == snap.shape and bool(torch.equal(torch.nan_to_num(x.detach()), torch.nan_to_num(snap)))
    return x.shape == snap.shape and bool(np.array_equal(x, snap, equal_nan=x.dtype.kind == "f"))


def _proxy_of(obj: Any) -> dict:
    ref = next(_REFS)
    _HANDLES[ref] = obj
    try:
        name = getattr(obj, "__name__", None)
        name = name if isinstance(name, str) else None
    except Exception:  # noqa: BLE001
        name = None
    t = type(obj)
    return {"proxy": {"ref": ref, "type": getattr(t, "__name__", "object"),
                      "qualname": f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', '?')}",
                      "name": name, "callable": callable(obj)}}


def _enc(x: Any, depth: int = 0) -> Any:
    """Kernel side: a result as plain JSON data; anything else stays here and travels as a proxy."""
    t = type(x)
    if x is None or t in (bool, str, int):
        return x
    if t is float:
        return x
    if depth > MAX_DEPTH:
        return _proxy_of(x)
    if isinstance(x, torch.Tensor):
        try:
            base = x.as_subclass(torch.Tensor) if t is not torch.Tensor and t is not torch.nn.Parameter else x
            data = base.detach().cpu().resolve_conj().resolve_neg()
            name = _DTYPE_NAMES.get(data.dtype)
            if name is None or data.layout != torch.strided:
                return _proxy_of(x)
            array = (data.float() if name == "bfloat16" else data).contiguous().numpy()
            return {"tensor": {"npy": _npy_bytes(array), "dtype": name, "grad": base.grad_fn is not None,
                               "requires_grad": bool(base.requires_grad)}}
        except Exception:  # noqa: BLE001
            return _proxy_of(x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in _ARRAY_KINDS or x.dtype.fields is not None:
            return _proxy_of(x)
        return {"ndarray": _npy_bytes(np.ascontiguousarray(x))}
    if isinstance(x, np.generic):
        if x.dtype.kind not in "biuf":
            return _proxy_of(x)
        return {"npscalar": {"dtype": x.dtype.name, "value": x.item()}}
    if isinstance(x, torch.dtype):
        return {"dtype": str(x).removeprefix("torch.")}
    if isinstance(x, (list, tuple)):
        tag = "tuple" if isinstance(x, tuple) else "list"
        return {tag: [_enc(v, depth + 1) for v in x]}
    if isinstance(x, dict):
        return {"dict": [[_enc(k, depth + 1), _enc(v, depth + 1)] for k, v in x.items()]}
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):  # an int subclass (IntEnum): its value only
        return int(x)
    if isinstance(x, float):
        return float(x)
    return _proxy_of(x)


class _Callback:
    """Kernel side: a function of the check's, answered by the grader."""

    def __init__(self, key: int, ask: Callable[[str], str], name: str) -> None:
        self._key, self._ask, self.__name__ = key, ask, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = {"callback": self._key, "args": [_enc(a) for a in args],
                   "kwargs": {str(k): _enc(v) for k, v in kwargs.items()}}
        reply = json.loads(self._ask(json.dumps(request, allow_nan=True)))
        if "raised" in reply:
            raise _rebuild_exception(reply["raised"])
        return _dec(reply["value"], _Context(self._ask))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__} provided by the check>"


_BUILTIN_EXCEPTIONS = {e.__name__: e for e in (ValueError, TypeError, IndexError, KeyError, RuntimeError,
                                                 AttributeError, ZeroDivisionError, NotImplementedError,
                                                 AssertionError, OverflowError)}


def _rebuild_exception(info: Any) -> Exception:
    info = info if isinstance(info, dict) else {}
    cls = _BUILTIN_EXCEPTIONS.get(str(info.get("type")), RuntimeError)
    message = str(info.get("message", ""))
    if cls is RuntimeError and info.get("type") != "RuntimeError":
        message = f"{info.get('type')}: {message}"
    return cls(message)


def _dec(x: Any, ctx: _Context) -> Any:
    """Kernel side: rebuild an argument the grader sent."""
    if not isinstance(x, dict):
        return x
    (tag, body), = x.items()
    if tag == "list":
        return [_dec(v, ctx) for v in body]
    if tag == "tuple":
        return tuple(_dec(v, ctx) for v in body)
    if tag == "dict":
        return {_dec(k, ctx): _dec(v, ctx) for k, v in body}
    if tag == "tensor":
        flat = torch.from_numpy(_npy_load(body["npy"]))
        dtype = _DTYPES[body["dtype"]]
        if "size" in body:
            t = torch.as_strided(flat, body["size"], body["stride"])
        else:
            t = flat
        t = t.to(dtype) if t.dtype != dtype else t
        return t.requires_grad_(True) if body.get("requires_grad") else t
    if tag == "ndarray":
        return _npy_load(body)
    if tag == "npscalar":
        return np.dtype(body["dtype"]).type(body["value"])
    if tag == "dtype":
        return _DTYPES[body]
    if tag == "generator":
        g = torch.Generator()
        g.set_state(torch.from_numpy(np.frombuffer(base64.b64decode(body), dtype=np.uint8).copy()))
        return g
    if tag == "ref":
        return _HANDLES[int(body)]
    if tag == "callback":
        return _Callback(int(body["key"]), ctx.ask, str(body.get("name", "function")))
    if tag == "build":
        fn = _resolve(body["fn"])
        args = [_dec(a, ctx) for a in body.get("args", [])]
        kwargs = {str(k): _dec(v, ctx) for k, v in body.get("kwargs", {}).items()}
        with torch.random.fork_rng(devices=[]):  # building draws from the global RNG: the learner's stays as it was
            obj = fn(*args, **kwargs)
        state = _dec(body.get("state", {"dict": []}), ctx)
        obj.train(bool(body.get("training", False)))  # before the attributes: they may set a submodule's mode
        for name, cls in (body.get("classes") or {}).items():
            obj.get_submodule(str(name)).__class__ = _resolve(cls)
        for name, attrs in (_dec(body.get("attributes", {"dict": []}), ctx) or {}).items():
            sub = obj.get_submodule(str(name))
            for key, value in attrs.items():
                setattr(sub, str(key), value)
        with torch.no_grad():
            if state:
                obj.load_state_dict(state)
            for name, p in obj.named_parameters():
                if name in body.get("frozen", []):
                    p.requires_grad_(False)
        ref = next(_REFS)
        _HANDLES[ref] = obj
        ctx.built[str(body["key"])] = ref
        return obj
    if tag == "sub":
        return _dec(body["root"], ctx).get_submodule(str(body["path"]))
    raise ValueError(f"unknown tag {tag!r}")


# ----------------------------------------------------------------------------- grader side


class Proxy:
    """A kernel-side object seen from the grader: attributes, items and calls go to the kernel.

    Only ``Checker`` helpers should touch it (``c.call(proxy, ...)``, ``proxy.blocks[2]``).
    """

    __slots__ = ("_session", "_ref", "_type", "_qualname", "_name", "_callable")

    def __init__(self, session: "Session", ref: int, type_name: str, qualname: str, name: str | None,
                 is_callable: bool) -> None:
        self._session, self._ref, self._type, self._qualname = session, ref, type_name, qualname
        self._name, self._callable = name, is_callable

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._session.getattr(self, name)

    def __getitem__(self, key: Any) -> Any:
        return self._session.getitem(self, key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._session.call(self, args, kwargs)
        if "raised" in reply:
            raise _rebuild_exception(reply["raised"])
        return reply["value"]

    def __repr__(self) -> str:
        return f"<kernel object of type {self._qualname}>"


def is_proxy(x: Any) -> bool:
    return type(x) is Proxy


def proxy_type_name(x: Proxy) -> str:
    return object.__getattribute__(x, "_type")


def proxy_name(x: Proxy) -> str | None:
    return object.__getattribute__(x, "_name")


def proxy_callable(x: Proxy) -> bool:
    return object.__getattribute__(x, "_callable")


@dataclass
class _Shared:
    module: torch.nn.Module
    fn: str
    args: tuple
    kwargs: dict
    key: str
    ref: int | None = None
    classes: dict = field(default_factory=dict)  # submodule -> "module:Class" swapped in after building
    attributes: dict = field(default_factory=dict)  # submodule -> {attribute: plain value} set after building


class Session:
    """The grader's side of one kernel: requests, proxies, callbacks and shared modules.

    transport.request(text, on_callback, timeout) -> text sends one request; ``on_callback``
    answers the kernel's callback requests meanwhile. ``timeout``: seconds per request.
    """

    def __init__(self, transport: Any, timeout: float = 60.0) -> None:
        self.transport, self.timeout = transport, timeout
        self.dead: KernelUnavailable | None = None
        self._callbacks: dict[int, Callable] = {}
        self._shared: dict[int, _Shared] = {}
        self._keys = itertools.count(1)
        self.requests = 0

    # --- plumbing
    def request(self, req: dict) -> dict:
        if self.dead is not None:
            raise self.dead
        self.requests += 1
        try:
            text = self.transport.request(json.dumps(req, allow_nan=True), self._on_callback, self.timeout)
        except KernelUnavailable as e:
            if e.kind == "died":
                self.dead = e
            raise
        reply = _loads(text)
        if not isinstance(reply, dict):
            raise KernelUnavailable("sent a reply that is not a JSON object", "malformed")
        if "error" in reply:
            raise KernelUnavailable(f"could not serve the grader ({_text(reply['error'])})", "malformed")
        built = reply.get("built")
        for key, ref in (built.items() if isinstance(built, dict) else ()):
            for shared in self._shared.values():
                if shared.key == key and type(ref) is int:
                    shared.ref = ref
        return reply

    def begin(self) -> None:
        """Start a new exercise: forget callbacks, shared modules and the kernel's handles."""
        self._callbacks.clear()
        self._shared.clear()
        self.request({"op": "release"})

    # --- what a check uses
    def answers(self) -> dict[str, int]:
        """{exercise ID: version} of the answers the kernel holds."""
        reply = self.request({"op": "answers"})
        items = reply.get("answers")
        out = {}
        for item in items[:10_000] if isinstance(items, list) else []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and type(item[1]) is int:
                out[item[0][:200]] = item[1]
        return out

    def answer(self, exercise_id: str) -> tuple[bool, Any]:
        """(found, the answer as data or a Proxy)."""
        reply = self.request({"op": "answer", "id": exercise_id})
        if reply.get("missing"):
            return False, None
        try:
            return True, self.decode(reply.get("value"))
        except Malformed as e:
            raise KernelUnavailable(f"sent a reply the grader cannot read ({e})", "malformed") from None

    def call(self, fn: Proxy, args: tuple, kwargs: dict, monitor: tuple | None = None) -> dict:
        """Call ``fn`` in the kernel: {"value"} or {"raised"}, plus "changed" and "monitor"."""
        req = {"op": "call", "fn": self.encode(fn), "args": [self.encode(a) for a in args],
               "kwargs": {str(k): self.encode(v) for k, v in kwargs.items()}}
        if monitor is not None:
            req["monitor"] = {"cls": monitor[0], "args": [self.encode(a) for a in monitor[1]]}
        reply = self.request(req)
        return self._outcome(reply, with_extras=True)

    def getattr(self, proxy: Proxy, name: str) -> Any:
        reply = self._outcome(self.request({"op": "getattr", "obj": self.encode(proxy), "name": name}))
        if "raised" in reply:
            raise AttributeError(f"{proxy_type_name(proxy)} has no attribute {name!r} "
                                 f"({_text(reply['raised'].get('message'))})")
        return reply["value"]

    def getitem(self, proxy: Proxy, key: Any) -> Any:
        reply = self._outcome(self.request({"op": "getitem", "obj": self.encode(proxy), "key": self.encode(key)}))
        if "raised" in reply:
            raise _rebuild_exception(reply["raised"])
        return reply["value"]

    def inspect(self, obj: Any, what: str) -> Any:
        """``INSPECTIONS[what](obj)``, in the kernel for a proxy or a shared module sent there, else here."""
        shared = self._shared.get(id(obj))
        if not is_proxy(obj) and (shared is None or shared.ref is None):
            return INSPECTIONS[what](obj)
        reply = self._outcome(self.request({"op": "inspect", "obj": self.encode(obj), "what": what}))
        if "raised" in reply:
            raise TypeError(_text(reply["raised"].get("message")))
        return reply["value"]

    def share(self, module: torch.nn.Module, builder: Any, args: tuple, kwargs: dict) -> None:
        """Send ``module`` to the kernel as ``builder(*args, **kwargs)`` loaded with its state dict."""
        fn = builder if isinstance(builder, str) else path_of(builder)
        self._shared[id(module)] = _Shared(module, fn, tuple(args), dict(kwargs), str(next(self._keys)))

    def ref_of(self, module: Any) -> int | None:
        shared = self._shared.get(id(module))
        return None if shared is None else shared.ref

    # --- encoding (grader -> kernel)
    def encode(self, x: Any, depth: int = 0) -> Any:
        t = type(x)
        if x is None or t in (bool, str, int, float):
            return x
        if depth > MAX_DEPTH:
            raise ValueError("arguments nested too deeply")
        if t is Proxy:
            if object.__getattribute__(x, "_session") is not self:
                raise ValueError("a proxy of another kernel")
            return {"ref": object.__getattribute__(x, "_ref")}
        if isinstance(x, torch.Tensor):
            return {"tensor": _tensor_out(x)}
        if isinstance(x, np.ndarray):
            return {"ndarray": _npy_bytes(np.ascontiguousarray(x))}
        if isinstance(x, np.generic):
            return {"npscalar": {"dtype": x.dtype.name, "value": x.item()}}
        if isinstance(x, torch.dtype):
            return {"dtype": str(x).removeprefix("torch.")}
        if isinstance(x, torch.Generator):
            return {"generator": base64.b64encode(x.get_state().numpy().tobytes()).decode("ascii")}
        if isinstance(x, (list, tuple)):
            return {"tuple" if isinstance(x, tuple) else "list": [self.encode(v, depth + 1) for v in x]}
        if isinstance(x, dict):
            return {"dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in x.items()]}
        if isinstance(x, (bool, int, float)):
            return x
        if isinstance(x, torch.nn.Module):
            spec = self._module_spec(x)
            if spec is not None:
                return spec
        if callable(x):
            key = next(self._keys)
            self._callbacks[key] = x
            name = getattr(x, "__name__", None) or type(x).__name__
            return {"callback": {"key": key, "name": str(name)}}
        raise TypeError(f"a {type(x).__name__} cannot be sent to the kernel")

    def _module_spec(self, module: torch.nn.Module) -> dict | None:
        shared = self._shared.get(id(module))
        if shared is None:
            spec = _transformer_spec(module)
            if spec is not None:
                self.share(module, transformer, (spec["config"],), {})
                shared = self._shared[id(module)]
                shared.classes, shared.attributes = spec["classes"], spec["attributes"]
        if shared is not None:
            if shared.ref is not None:
                return {"ref": shared.ref}
            m = shared.module
            return {"build": {"key": shared.key, "fn": shared.fn, "args": [self.encode(a) for a in shared.args],
                              "kwargs": {k: self.encode(v) for k, v in shared.kwargs.items()},
                              "state": self.encode(dict(m.state_dict())), "training": m.training,
                              "frozen": [n for n, p in m.named_parameters() if not p.requires_grad],
                              "classes": shared.classes, "attributes": self.encode(shared.attributes)}}
        for root in list(self._shared.values()):
            for name, sub in root.module.named_modules():
                if sub is module and name:
                    return {"sub": {"root": self._module_spec(root.module), "path": name}}
        return None

    # --- decoding (kernel -> grader): strict, no code runs
    def decode(self, x: Any, allow_proxies: bool = True) -> Any:
        budget = [MAX_NODES]
        return self._decode(x, 0, budget, allow_proxies)

    def _decode(self, x: Any, depth: int, budget: list, allow_proxies: bool) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH + 2:
            raise Malformed("too many values, or nested too deeply")
        t = type(x)
        if x is None or t in (bool, str, float):
            return x
        if t is int:
            if abs(x) > 10 ** 300:
                raise Malformed("an integer too large")
            return x
        if t is not dict or len(x) != 1:
            raise Malformed(f"unexpected {t.__name__}")
        (tag, body), = x.items()
        if tag in ("list", "tuple"):
            if type(body) is not list:
                raise Malformed(f"{tag} body")
            items = [self._decode(v, depth + 1, budget, allow_proxies) for v in body]
            return items if tag == "list" else tuple(items)
        if tag == "dict":
            if type(body) is not list:
                raise Malformed("dict body")
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise Malformed("dict item")
                key = self._decode(pair[0], depth + 1, budget, False)
                try:
                    hash(key)
                except TypeError:
                    raise Malformed("unhashable dict key") from None
                out[key] = self._decode(pair[1], depth + 1, budget, allow_proxies)
            return out
        if tag == "tensor":
            if type(body) is not dict or set(body) - {"npy", "dtype", "grad", "requires_grad"}:
                raise Malformed("tensor body")
            dtype = _DTYPES.get(body.get("dtype"))
            if dtype is None:
                raise Malformed("tensor dtype")
            array = _npy_load(body.get("npy"))
            if array.dtype.kind == "U":
                raise Malformed("a tensor of strings")
            try:
                t_ = torch.from_numpy(array)
            except Exception:  # noqa: BLE001  a NumPy dtype torch does not hold
                raise Malformed(f"a tensor of dtype {array.dtype}") from None
            if dtype == torch.bfloat16 and t_.dtype == torch.float32:
                t_ = t_.to(torch.bfloat16)
            if t_.dtype != dtype:
                raise Malformed("tensor data and dtype disagree")
            if body.get("grad") is True:
                t_._tfcore_had_grad_fn = True
            return t_
        if tag == "ndarray":
            return _npy_load(body)
        if tag == "npscalar":
            if type(body) is not dict or body.get("dtype") not in _SCALAR_DTYPES:
                raise Malformed("NumPy scalar")
            value = body.get("value")
            if type(value) not in (bool, int, float) or (type(value) is int and abs(value) > 2 ** 64):
                raise Malformed("NumPy scalar value")
            return np.dtype(body["dtype"]).type(value)
        if tag == "dtype":
            if body not in _DTYPES:
                raise Malformed("dtype")
            return _DTYPES[body]
        if tag == "proxy" and allow_proxies:
            if type(body) is not dict or type(body.get("ref")) is not int:
                raise Malformed("proxy")
            name = body.get("name")
            return Proxy(self, body["ref"], _text(body.get("type"), 80) or "object",
                         _text(body.get("qualname"), 200) or "?", _text(name, 80) if isinstance(name, str) else None,
                         body.get("callable") is True)
        raise Malformed(f"unexpected tag {str(tag)[:40]!r}")

    def _outcome(self, reply: dict, with_extras: bool = False) -> dict:
        """Validate a reply: {"value": decoded} or {"raised": {...}}, plus "changed" and "monitor"."""
        try:
            if "raised" in reply:
                raised = reply["raised"] if isinstance(reply["raised"], dict) else {}
                out: dict = {"raised": {"type": _text(raised.get("type"), 80) or "Exception",
                                        "message": _text(raised.get("message"), 500),
                                        "not_implemented": raised.get("not_implemented") is True,
                                        "interrupted": raised.get("interrupted") is True}}
            elif "value" in reply:
                out = {"value": self.decode(reply["value"])}
            else:
                raise Malformed("neither a value nor an exception")
            if with_extras:
                changed = reply.get("changed", [])
                out["changed"] = [_text(c, 40) for c in changed] if isinstance(changed, list) else []
                if "monitor" in reply:
                    report = self.decode(reply["monitor"], allow_proxies=False)
                    out["monitor"] = report if isinstance(report, dict) else {}
        except Malformed as e:
            raise KernelUnavailable(f"sent a reply the grader cannot read ({e})", "malformed") from None
        return out

    # --- callbacks (kernel -> grader, during a call)
    def _on_callback(self, text: str) -> str:
        if len(text) > MAX_CALLBACK_CHARS:  # the grader computes the check's function: keep its work small
            return json.dumps({"raised": {"type": "ValueError", "message": "the check's function accepts at most "
                                          f"{MAX_CALLBACK_CHARS // 1_000_000} MB of arguments per call"}})
        try:
            request = _loads(text)
            fn = self._callbacks[int(request["callback"])]
            args = [self.decode(a, allow_proxies=False) for a in request.get("args", [])]
            kwargs = {str(k): self.decode(v, allow_proxies=False) for k, v in request.get("kwargs", {}).items()}
        except Exception as e:  # noqa: BLE001
            return json.dumps({"raised": {"type": "TypeError", "message": "the check's function accepts tensors, "
                                          f"arrays, numbers and strings only ({type(e).__name__})"}})
        if _elements((args, kwargs)) > MAX_CALLBACK_ELEMENTS:
            return json.dumps({"raised": {"type": "ValueError", "message": "the check's function accepts at most "
                                          f"{MAX_CALLBACK_ELEMENTS} numbers per call (tensors and arrays together)"}})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = fn(*args, **kwargs)
            return json.dumps({"value": self.encode(value)}, allow_nan=True)
        except Exception as e:  # noqa: BLE001  the learner passed something the check's function refuses
            return json.dumps({"raised": {"type": type(e).__name__, "message": _short(e)}})


def _elements(x: Any) -> int:
    """Tensor and array elements in a decoded value (containers searched)."""
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, np.ndarray):
        return int(x.size)
    if isinstance(x, (list, tuple)):
        return sum(_elements(v) for v in x)
    if isinstance(x, dict):
        return sum(_elements(k) + _elements(v) for k, v in x.items())
    return 0


_SCALAR_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64"}


def had_grad_fn(t: Any) -> bool:
    """True if ``t`` came from the kernel with a ``grad_fn`` there (it travels as data, without its graph)."""
    return getattr(t, "_tfcore_had_grad_fn", False) is True


def _tensor_out(t: torch.Tensor) -> dict:
    """A tensor as its storage span, size and strides, so the kernel rebuilds the same view."""
    requires_grad = bool(t.requires_grad)
    t = t.detach().cpu().resolve_conj().resolve_neg()
    name = _DTYPE_NAMES[t.dtype]
    if t.numel() == 0:
        flat, size, stride = torch.empty(0, dtype=t.dtype), list(t.shape), list(t.contiguous().stride())
    else:
        span = 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride()))
        flat = torch.as_strided(t, (span,), (1,), t.storage_offset()).clone()
        size, stride = list(t.shape), list(t.stride())
    array = (flat.float() if name == "bfloat16" else flat).numpy()
    return {"npy": _npy_bytes(array), "size": size, "stride": stride, "dtype": name,
            "requires_grad": requires_grad}


def _text(x: Any, limit: int = 300) -> str:
    text = x if isinstance(x, str) else ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def structure_count(data: str | bytes | memoryview) -> int:
    """Commas and opening brackets in JSON text: a bound on the objects ``json.loads`` builds from it."""
    if isinstance(data, str):
        return data.count(",") + data.count("[") + data.count("{")
    raw = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    return raw.count(b",") + raw.count(b"[") + raw.count(b"{")


def _loads(text: Any) -> Any:
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_CHARS:
        raise KernelUnavailable("sent a reply that is too large or not text", "malformed")
    if structure_count(text) > MAX_STRUCTURE:
        raise KernelUnavailable(f"sent a reply with more than {MAX_STRUCTURE} values", "malformed")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise KernelUnavailable(f"sent a reply that is not JSON ({type(e).__name__})", "malformed") from None


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and a.dtype == b.dtype and bool(torch.equal(a, b))
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def _transformer_spec(module: torch.nn.Module) -> dict | None:
    """How the kernel rebuilds a ``tfcore.model.Transformer`` a check built, from plain data; None if it cannot.

    {"config": the config as a dict, "classes": {submodule: "module:Class"} for submodules whose class
    was swapped (e.g. ``tfcore.diagnostics.BrokenAttention``), "attributes": {submodule: {name: value}}
    for plain public attributes (None, bool, int, float, str) that differ from a fresh build}. The
    weights travel as the state dict. A model with hooks, a swapped class that is not importable,
    or another kind of changed attribute is not rebuilt (it reaches the learner as a function).
    """
    import dataclasses

    try:
        from tfcore.model import Transformer
    except ImportError:  # pragma: no cover
        return None
    if type(module) is not Transformer or hook_count(module):
        return None
    config = dataclasses.asdict(module.config)
    try:
        with torch.random.fork_rng(devices=[]):
            fresh = transformer(config)
    except Exception:  # noqa: BLE001
        return None
    fresh.train(module.training)
    ours, theirs = dict(module.named_modules()), dict(fresh.named_modules())
    if ours.keys() != theirs.keys():
        return None
    classes, attributes = {}, {}
    for name, m in ours.items():
        f = theirs[name]
        if type(m) is not type(f):
            try:
                path = path_of(type(m))
                if _resolve(path) is not type(m):
                    return None
            except Exception:  # noqa: BLE001
                return None
            classes[name] = path
        changed = {}
        for key, value in vars(m).items():
            if key.startswith("_") or _same(value, vars(f).get(key, _MISSING)):
                continue
            if value is not None and type(value) not in (bool, int, float, str):
                return None
            changed[key] = value
        if changed:
            attributes[name] = changed
    return {"config": config, "classes": classes, "attributes": attributes}


class Loopback:
    """A transport to a "kernel" in this very process (tests): every message is still serialised."""

    def request(self, text: str, on_callback: Callable[[str], str], timeout: float) -> str:
        return serve(text, ask=on_callback).text
