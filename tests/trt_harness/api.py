"""Checked fakes: stand-ins for TensorRT objects that only allow what the real version has.

Every attribute read, attribute write, method call (argument count, keyword
names and types) and return value of a :class:`Fake` is checked against the
real pybind class of the loaded TensorRT version, using the signatures in its
docstrings. Enums, ``Dims``, ``Logger`` and module functions are the real
objects, so ``trt.BuilderFlag.INT8`` fails on 11.x by itself. Behaviour (what
a parse or a build *does*) is plugged in by :mod:`tests.trt_harness.world`.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_SIG = re.compile(r"^(?:\d+\.\s+)?(\w+)\((.*)\)\s*->\s*(.+)$")
_PROP = re.compile(r"^\((.*)\)\s*->\s*(.+)$")
_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.", "nvonnxparser::", "nvinfer1::")
_ALIASES = {
    "IParserError": "ParserError",
    "detail::accessor<detail::accessor_policies::str_attr>": "IPluginRegistry",
}
# Factories whose real constructors call the stubbed C entry points (which return null).
FACTORY_CLASSES = ("Builder", "OnnxParser", "Runtime", "Refitter", "OnnxParserRefitter")
FACTORY_FUNCS = ("get_plugin_registry", "get_builder_plugin_registry")


class HarnessApiError(AttributeError):
    """Code under test used an API the loaded TensorRT version does not have (or misused one)."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    optional: bool


@dataclass(frozen=True)
class Sig:
    params: tuple[Param, ...]
    returns: str


def _split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _params(text: str) -> tuple[Param, ...]:
    params = []
    for part in _split_top(text):
        name, _, rest = part.partition(":")
        typ, _, default = rest.partition(" = ")
        params.append(Param(name.strip(), typ.strip(), bool(default)))
    return tuple(params)


def parse_signatures(doc: str | None, name: str) -> list[Sig]:
    sigs = []
    for line in (doc or "").splitlines():
        m = _SIG.match(line.strip())
        if m and m.group(1) == name and "*args" not in m.group(2):
            sigs.append(Sig(_params(m.group(2)), m.group(3).strip()))
    return sigs


def short_type(t: str) -> str:
    t = t.strip()
    for p in _PREFIXES:
        t = t.replace(p, "")
    return _ALIASES.get(t, t)


class ApiSpec:
    """Member lookup and type checks against one real ``tensorrt_bindings`` module."""

    def __init__(self, real: types.ModuleType) -> None:
        self.real = real
        self.version = real.__version__

    def real_class(self, name: str) -> type | None:
        obj: Any = self.real
        for part in short_type(name).split("."):
            obj = getattr(obj, part, None)
        return obj if isinstance(obj, type) else None

    def member(self, cls_name: str, attr: str) -> tuple[str, Any]:
        """('method', sigs) | ('property', (return type, settable)) | ('value', real object)."""
        cls = self.real_class(cls_name)
        try:
            raw = inspect.getattr_static(cls, attr)
        except AttributeError:
            raise HarnessApiError(f"TensorRT {self.version}: {cls_name} has no attribute {attr!r}") from None
        if isinstance(raw, property):
            m = _PROP.match((raw.fget.__doc__ or "").strip().splitlines()[0]) if raw.fget else None
            return "property", (m.group(2).strip() if m else "object", raw.fset is not None)
        if callable(raw) and not isinstance(raw, type) and not isinstance(getattr(cls, attr), cls):
            return "method", parse_signatures(getattr(cls, attr).__doc__, attr)
        return "value", getattr(cls, attr)

    # -- types ----------------------------------------------------------------------
    def accepts(self, typ: str, value: Any) -> bool:
        t = short_type(typ)
        if isinstance(value, Fake):
            real = self.real_class(t)
            return real is not None and issubclass(self.real_class(value._cls), real)
        base = t.split("[")[0]
        if base in ("int", "typing.SupportsInt"):
            return isinstance(value, int) or hasattr(value, "__index__") and not hasattr(value, "name")
        if base == "bool":
            return isinstance(value, (bool, int))
        if base in ("float", "typing.SupportsFloat"):
            return isinstance(value, (int, float))
        if base == "str":
            return isinstance(value, str)
        if base in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer"):
            return isinstance(value, (bytes, bytearray, memoryview)) or hasattr(value, "__array_interface__")
        if base in ("tuple", "list", "List", "collections.abc.Sequence", "Sequence"):
            return isinstance(value, (tuple, list)) or type(value).__name__ == "Dims"
        real = self.real_class(t)
        if real is not None and real.__name__.startswith("Dims") and isinstance(value, (tuple, list)):
            return all(isinstance(v, int) for v in value)  # pybind implicit conversion registered by TensorRT
        if real is not None:
            return isinstance(value, real)
        return True  # capsule, object, unknown C++ types: not checkable

    def fits(self, sig: Sig, args: tuple, kwargs: dict) -> str | None:
        """None when the call matches ``sig``, else why not."""
        params = (
            [p for p in sig.params if p.name not in ("self", "arg0")]
            if sig.params and sig.params[0].name in ("self", "arg0")
            else list(sig.params)
        )
        if len(args) > len(params):
            return f"{len(args)} positional arguments, signature takes {len(params)}"
        names = [p.name for p in params]
        for k in kwargs:
            if k not in names:
                return f"no keyword {k!r} (has {names})"
        for i, p in enumerate(params):
            if i < len(args):
                v = args[i]
            elif p.name in kwargs:
                v = kwargs[p.name]
            elif p.optional:
                continue
            else:
                return f"missing argument {p.name!r}"
            if v is None and p.optional:
                continue
            if not self.accepts(p.type, v):
                return f"argument {p.name!r} expects {short_type(p.type)}, got {type(v).__name__} {v!r}"
        return None

    def check_call(self, owner: str, name: str, sigs: list[Sig], args: tuple, kwargs: dict) -> Sig:
        if not sigs:
            raise HarnessApiError(f"TensorRT {self.version}: {owner}.{name} has no parsable signature")
        reasons = []
        for s in sigs:
            why = self.fits(s, args, kwargs)
            if why is None:
                return s
            reasons.append(why)
        raise HarnessApiError(
            f"TensorRT {self.version}: {owner}.{name}{args!r} matches no signature: {reasons}"
        )


Impl = Callable[..., Any]


class World:
    """The spec plus behaviours and a call log shared by every fake of one harness run."""

    def __init__(self, real: types.ModuleType) -> None:
        self.spec = ApiSpec(real)
        self.impls: dict[tuple[str, str], Impl] = {}
        self.props: dict[tuple[str, str], Any] = {}
        self.calls: list[tuple[str, str, tuple, dict]] = []

    def impl(self, cls_name: str, attr: str) -> Impl | None:
        for klass in self.spec.real_class(cls_name).__mro__:
            if (klass.__name__, attr) in self.impls:
                return self.impls[(klass.__name__, attr)]
        return None

    def default(self, typ: str) -> Any:
        t = short_type(typ)
        base = t.split("[")[0]
        simple = {"None": None, "bool": True, "int": 0, "str": "", "float": 0.0, "List": [], "list": []}
        if base in simple:
            return simple[base]
        real = self.spec.real_class(t)
        return Fake(self, real.__name__) if real is not None else object()

    def check_return(self, owner: str, name: str, typ: str, value: Any) -> Any:
        if (
            value is not None
            and short_type(typ) != "None"
            and not self.spec.accepts(typ.split("[")[0], value)
            and not short_type(typ).startswith(("List", "list"))
        ):
            raise HarnessApiError(
                f"harness behaviour for {owner}.{name} returned {type(value).__name__}, "
                f"TensorRT {self.spec.version} declares {short_type(typ)}"
            )
        return value


class Fake:
    """A TensorRT object of class ``cls`` whose every use is checked against the real class."""

    def __init__(self, world: World, cls: str, **state: Any) -> None:
        if world.spec.real_class(cls) is None:
            raise HarnessApiError(f"TensorRT {world.spec.version} has no class {cls}")
        object.__setattr__(self, "_world", world)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_state", dict(state))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        w, cls = self._world, self._cls
        kind, info = w.spec.member(cls, attr)
        if kind == "value":
            return info
        if kind == "property":
            typ, _ = info
            if attr in self._state:
                return self._state[attr]
            impl = w.impl(cls, attr)
            value = impl(self) if impl else w.props.get((cls, attr), w.default(typ))
            return w.check_return(cls, attr, typ, value)

        def call(*args: Any, **kwargs: Any) -> Any:
            sig = w.spec.check_call(cls, attr, info, args, kwargs)
            w.calls.append((cls, attr, args, kwargs))
            impl = w.impl(cls, attr)
            value = impl(self, *args, **kwargs) if impl else w.default(sig.returns)
            return w.check_return(cls, attr, sig.returns, value)

        return call

    def __setattr__(self, attr: str, value: Any) -> None:
        w, cls = self._world, self._cls
        kind, info = w.spec.member(cls, attr)
        if kind != "property" or not info[1]:
            raise HarnessApiError(f"TensorRT {w.spec.version}: {cls}.{attr} is not a settable property")
        nullable = value is None and w.spec.real_class(info[0]) is not None  # pybind: None -> nullptr
        if not nullable and not w.spec.accepts(info[0], value):
            raise HarnessApiError(
                f"TensorRT {w.spec.version}: {cls}.{attr} expects {short_type(info[0])}, "
                f"got {type(value).__name__}"
            )
        w.calls.append((cls, f"{attr}=", (value,), {}))
        self._state[attr] = value

    def __bytes__(self) -> bytes:
        if "payload" not in self._state:
            raise TypeError(f"{self._cls} does not expose a buffer")
        return bytes(self._state["payload"])

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return str(self._state.get("_desc", repr(self)))

    def __repr__(self) -> str:
        return f"<Fake {self._cls} (TensorRT {self._world.spec.version})>"


def proxy_module(world: World) -> types.ModuleType:
    """A ``tensorrt`` module: the real one, with the null-returning factories replaced by fakes."""
    real = world.spec.real

    def factory(cls: str) -> Callable[..., Fake]:
        sigs = parse_signatures(getattr(real, cls).__init__.__doc__, "__init__")

        def make(*args: Any, **kwargs: Any) -> Fake:
            world.spec.check_call(cls, "__init__", sigs, args, kwargs)
            world.calls.append((cls, "__init__", args, kwargs))
            fake = Fake(world, cls)
            impl = world.impls.get((cls, "__init__"))
            if impl:
                impl(fake, *args, **kwargs)
            return fake

        return make

    def function(name: str) -> Callable[..., Any]:
        sig = parse_signatures(getattr(real, name).__doc__, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            world.spec.check_call("tensorrt", name, sig, args, kwargs)
            world.calls.append(("tensorrt", name, args, kwargs))
            impl = world.impls.get(("tensorrt", name))
            return impl(*args, **kwargs) if impl else world.default(sig[0].returns)

        return call

    mod = types.ModuleType("tensorrt", f"harness view of TensorRT {real.__version__}")
    overrides = {c: factory(c) for c in FACTORY_CLASSES if hasattr(real, c)}
    overrides.update({f: function(f) for f in FACTORY_FUNCS if hasattr(real, f)})

    def getattr_(name: str) -> Any:
        if name in overrides:
            return overrides[name]
        try:
            return getattr(real, name)
        except AttributeError:
            raise HarnessApiError(f"TensorRT {real.__version__} has no tensorrt.{name}") from None

    mod.__getattr__ = getattr_  # type: ignore[attr-defined]
    mod.__version__ = real.__version__
    mod.__harness_world__ = world  # type: ignore[attr-defined]
    return mod
