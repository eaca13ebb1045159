"""Behaviour for the checked fakes: what parsing, building and running *do*.

The fakes in :mod:`tests.trt_harness.api` only check that calls exist; this
module makes them act like TensorRT closely enough to run the builder and the
runtime end to end on the CPU:

- ``OnnxParser.parse_from_file`` reads the ONNX (inputs, outputs, plugin nodes);
- ``Builder.build_serialized_network`` validates what TensorRT would reject
  (missing/invalid profiles, DLA without static shapes or GPU fallback, a
  plugin op with no loaded library, precision flags on a strongly typed
  network, DLA in a release without it), applies the documented DLA typing
  rule to decide how many layers land on DLA (10.x: only a weakly typed
  network with FP16; a strongly typed one falls back to the GPU silently;
  >= 11.4.1: strongly typed), reports failures to an attached
  ``IErrorRecorder`` and serialises a JSON "plan";
- ``ICudaEngine.create_engine_inspector`` reports the layer placement as JSON
  (per layer with ``ProfilingVerbosity.DETAILED``, names only otherwise);
- ``Runtime.deserialize_cuda_engine`` refuses plans of another version;
- ``IExecutionContext.execute_async_v3`` enqueues a kernel on the pycuda
  stand-in's stream that runs the ONNX with ONNX Runtime on device memory; a dynpose
  plugin node in it runs as the plugin's kernel source on the CPU (``plugin_kernels``:
  the host build of kernels/, the code the real plugin's enqueue launches).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.defs

from runtime.heads.base import SIMCC_DECODE_PLUGIN

from . import fake_cuda
from .api import Fake, World, proxy_module
from .loader import load_real

_DTYPES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF"}


def _onnx_io(path: str) -> dict[str, Any]:
    model = onnx.load(path, load_external_data=False)
    init = {i.name for i in model.graph.initializer}

    def one(v: onnx.ValueInfoProto) -> dict[str, Any]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims, "dtype": _DTYPES.get(v.type.tensor_type.elem_type, "FLOAT")}

    plugin_ops = sorted(
        {
            n.op_type
            for n in model.graph.node
            if n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type, n.domain or "")
        }
    )
    return {
        "inputs": [one(v) for v in model.graph.input if v.name not in init],
        "outputs": [one(v) for v in model.graph.output],
        "plugin_ops": plugin_ops,
        "layers": [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)],
        "qdq": any(n.op_type == "QuantizeLinear" for n in model.graph.node),
    }


PluginKernel = Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]


def _simcc_decode_kernel(inputs: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
    """DynPoseSimCCDecode's enqueue, on the CPU: the kernel's row math (kernels/simcc_rowmath.cuh)."""
    from kernels.host_build import HostKernels

    x, y = inputs
    return list(HostKernels().simcc_decode(x, y, float(attrs.get("split_ratio", 2.0))))


def _split_plugins(path: str) -> tuple[bytes, list[onnx.NodeProto]]:
    """The graph without its plugin nodes (their inputs become outputs, for ONNX Runtime) and
    those nodes in graph order."""
    model = onnx.load(path)
    plugins = [n for n in model.graph.node if _is_plugin(n)]
    if not plugins:
        return model.SerializeToString(), []
    keep = [n for n in model.graph.node if not _is_plugin(n)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    made = {o for n in plugins for o in n.output}
    outs = [o for o in model.graph.output if o.name not in made]
    outs += [onnx.ValueInfoProto(name=i) for n in plugins for i in n.input if i not in made]
    del model.graph.output[:]
    model.graph.output.extend(outs)
    return model.SerializeToString(), plugins


def _is_plugin(n: onnx.NodeProto) -> bool:
    return n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type, n.domain or "")


class TrtWorld(World):
    """One harness session: real spec + behaviours + the pycuda stand-in."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.trt = proxy_module(self)
        self.dla_cores = 0
        self.fail_int8: str | None = None  # TensorRT's message when an INT8 (Q/DQ) build must fail
        self.dla_from_11 = (11, 4, 1)  # first 11.x release with DLA (JetPack 7.2.2); tests may emulate it
        self.dla_places_nothing = False  # TensorRT put every layer of a DLA build on the GPU
        self.plugin_libs: dict[str, list[str]] = {}  # library path -> plugin op types it registers
        self.registered_ops: set[str] = set()
        self.sessions: dict[str, Any] = {}
        # plugin op -> its computation at execute time (an op missing here cannot run)
        self.plugin_kernels: dict[str, PluginKernel] = {SIMCC_DECODE_PLUGIN: _simcc_decode_kernel}
        self.registry = Fake(self, "IPluginRegistry")
        self._install()

    # -- builder side ---------------------------------------------------------------
    def _install(self) -> None:
        trt, impl = self.trt, self.impls
        impl[("tensorrt", "get_plugin_registry")] = lambda: self.registry
        impl[("IPluginRegistry", "load_library")] = self._load_library
        impl[("Builder", "num_DLA_cores")] = lambda b: self.dla_cores
        impl[("Builder", "create_network")] = lambda b, flags=0: Fake(
            self, "INetworkDefinition", _flags=flags, _io=None
        )
        impl[("INetworkDefinition", "num_inputs")] = lambda n: len(n._state["_io"]["inputs"])
        impl[("INetworkDefinition", "num_outputs")] = lambda n: len(n._state["_io"]["outputs"])
        impl[("INetworkDefinition", "get_input")] = lambda n, i: self._tensor(n._state["_io"]["inputs"][i])
        impl[("INetworkDefinition", "get_output")] = lambda n, i: self._tensor(n._state["_io"]["outputs"][i])
        impl[("OnnxParser", "__init__")] = lambda p, network, logger: p._state.update(
            _net=network, _errors=[]
        )
        impl[("OnnxParser", "parse_from_file")] = self._parse
        impl[("OnnxParser", "num_errors")] = lambda p: len(p._state["_errors"])
        impl[("OnnxParser", "get_error")] = lambda p, i: Fake(
            self, "ParserError", _desc=p._state["_errors"][i]
        )
        impl[("Builder", "create_builder_config")] = lambda b: Fake(
            self, "IBuilderConfig", _profiles=[], _flags=set(), _pools={}, _cache=None
        )
        impl[("Builder", "create_optimization_profile")] = lambda b: Fake(
            self, "IOptimizationProfile", _shapes={}
        )
        impl[("IOptimizationProfile", "set_shape")] = lambda p, name, lo, opt, hi: p._state["_shapes"].update(
            {name: [list(lo), list(opt), list(hi)]}
        )
        impl[("IBuilderConfig", "add_optimization_profile")] = self._add_profile
        impl[("IBuilderConfig", "set_flag")] = lambda c, f: c._state["_flags"].add(f.name)
        impl[("IBuilderConfig", "get_flag")] = lambda c, f: f.name in c._state["_flags"]
        impl[("IBuilderConfig", "set_memory_pool_limit")] = lambda c, pool, size: c._state["_pools"].update(
            {pool.name: size}
        )
        impl[("IBuilderConfig", "create_timing_cache")] = lambda c, data: Fake(
            self, "ITimingCache", _data=bytes(data)
        )
        impl[("IBuilderConfig", "set_timing_cache")] = lambda c, cache, ignore: (
            c._state.update(_cache=cache) or True
        )
        impl[("IBuilderConfig", "get_timing_cache")] = lambda c: c._state["_cache"]
        impl[("ITimingCache", "serialize")] = lambda t: Fake(
            self, "IHostMemory", payload=t._state["_data"] + b"+"
        )
        impl[("Builder", "build_serialized_network")] = self._build
        impl[("ICudaEngine", "create_engine_inspector")] = lambda e: Fake(self, "EngineInspector", _engine=e)
        impl[("EngineInspector", "get_engine_information")] = self._layer_info
        impl[("ICudaEngine", "num_layers")] = lambda e: len(e._state["_plan"]["layers"])
        # runtime side
        impl[("Runtime", "deserialize_cuda_engine")] = self._deserialize
        impl[("ICudaEngine", "num_io_tensors")] = lambda e: len(e._state["_io"])
        impl[("ICudaEngine", "num_optimization_profiles")] = lambda e: 1
        impl[("ICudaEngine", "get_tensor_name")] = lambda e, i: e._state["_io"][i]["name"]
        impl[("ICudaEngine", "get_tensor_mode")] = lambda e, n: (
            trt.TensorIOMode.INPUT if self._io(e, n)["mode"] == "input" else trt.TensorIOMode.OUTPUT
        )
        impl[("ICudaEngine", "get_tensor_dtype")] = lambda e, n: getattr(
            trt.DataType, self._io(e, n)["dtype"]
        )
        impl[("ICudaEngine", "get_tensor_shape")] = lambda e, n: trt.Dims(self._io(e, n)["shape"])
        impl[("ICudaEngine", "get_tensor_profile_shape")] = lambda e, n, i: [
            trt.Dims(s) for s in e._state["_plan"]["profiles"][n]
        ]
        impl[("ICudaEngine", "create_execution_context")] = lambda e, *a: Fake(
            self, "IExecutionContext", _engine=e, _shapes={}, _addr={}
        )
        impl[("IExecutionContext", "set_input_shape")] = self._set_input_shape
        impl[("IExecutionContext", "set_tensor_address")] = lambda c, n, a: (
            c._state["_addr"].update({n: a}) or True
        )
        impl[("IExecutionContext", "get_tensor_shape")] = self._context_shape
        impl[("IExecutionContext", "execute_async_v3")] = self._execute

    def _tensor(self, t: dict[str, Any]) -> Fake:
        return Fake(
            self,
            "ITensor",
            name=t["name"],
            shape=self.trt.Dims(t["shape"]),
            dtype=getattr(self.trt.DataType, t["dtype"]),
        )

    def _load_library(self, reg: Fake, path: str) -> Any:
        if not Path(path).is_file():
            return None
        self.registered_ops.update(self.plugin_libs.get(path, []))
        return object()

    def _parse(self, parser: Fake, path: str) -> bool:
        io = _onnx_io(path)
        missing = [op for op in io["plugin_ops"] if op not in self.registered_ops]
        if missing:
            parser._state["_errors"].append(f"No importer registered for op: {missing[0]}")
            return False
        parser._state["_net"]._state.update(_io=io, _onnx=str(Path(path).resolve()))
        return True

    def _add_profile(self, config: Fake, profile: Fake) -> int:
        for lo, opt, hi in profile._state["_shapes"].values():
            if not all(0 <= a <= b <= c for a, b, c in zip(lo, opt, hi)):
                return -1
        config._state["_profiles"].append(profile._state["_shapes"])
        return len(config._state["_profiles"]) - 1

    def _fail(self, owner: Fake, code: str, desc: str) -> None:
        """What TensorRT does on a failed build: tell the attached error recorder, return null."""
        rec = owner._state.get("error_recorder")
        if rec is not None:
            rec.report_error(getattr(self.trt.ErrorCode, code), desc)

    def _version(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.spec.version.split(".")[:3])

    def _strongly_typed(self, network: Fake) -> bool:
        """TensorRT 10.x networks are strongly typed only with the creation flag; 11.x has no flag."""
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return flag is None or bool(network._state["_flags"] & (1 << int(flag)))

    def _refused(
        self, builder: Fake, st: dict[str, Any], io: dict[str, Any], strongly: bool, dla: bool
    ) -> bool:
        """Whether TensorRT would refuse this build (reported through the builder's error recorder);
        a network our builder should never hand over is an AssertionError."""
        if strongly and {"FP16", "INT8", "BF16"} & st["_flags"]:
            self._fail(
                builder,
                "INVALID_ARGUMENT" if hasattr(self.trt.ErrorCode, "INVALID_ARGUMENT") else "INVALID_VALUE",
                "precision builder flags are not allowed on a strongly typed network",
            )
            return True
        if not strongly and not dla:
            raise AssertionError("GPU network built weakly typed: its precision would be up to the builder")
        if len(st["_profiles"]) != 1:
            raise AssertionError(f"expected one optimisation profile, got {len(st['_profiles'])}")
        prof = st["_profiles"][0]
        if any(-1 in t["shape"] and t["name"] not in prof for t in io["inputs"]):
            return True  # TensorRT: dynamic input without a profile
        if self.fail_int8 and io["qdq"]:
            self._fail(builder, "INTERNAL_ERROR", self.fail_int8)
            return True
        return False

    def _dla_layers(
        self, builder: Fake, st: dict[str, Any], prof: dict[str, Any], n_layers: int, strongly: bool
    ) -> int | None:
        """How many layers a DLA build places on the DLA; None when TensorRT refuses the build."""
        static = all(lo == hi for lo, _, hi in prof.values())
        v = self._version()
        if (11, 0, 0) <= v < self.dla_from_11:
            self._fail(builder, "INVALID_VALUE", f"DLA is not supported by TensorRT {self.spec.version}")
            return None
        if not static or "GPU_FALLBACK" not in st["_flags"] or st.get("DLA_core", 0) >= self.dla_cores:
            self._fail(builder, "INVALID_VALUE", "DLA needs static shapes, GPU fallback and an existing core")
            return None
        # 10.x DLA runs FP16/INT8 of weakly typed networks only; every other layer falls back
        on_dla = (not strongly and "FP16" in st["_flags"]) if v < (11, 0, 0) else strongly
        return n_layers if on_dla and not self.dla_places_nothing else 0

    def _build(self, builder: Fake, network: Fake, config: Fake) -> Fake | None:
        st, io = config._state, network._state["_io"]
        if io is None:
            raise AssertionError("build_serialized_network on a network the parser never filled")
        strongly = self._strongly_typed(network)
        dla = st.get("default_device_type") == self.trt.DeviceType.DLA
        if self._refused(builder, st, io, strongly, dla):
            return None
        prof = st["_profiles"][0]
        dla_layers = self._dla_layers(builder, st, prof, len(io["layers"]), strongly) if dla else 0
        if dla_layers is None:
            return None
        plan = {
            "fake_engine": self.spec.version,
            "onnx": network._state["_onnx"],
            "io": [{**t, "mode": "input"} for t in io["inputs"]]
            + [{**t, "mode": "output"} for t in io["outputs"]],
            "profiles": prof,
            "dla_core": st.get("DLA_core") if dla else None,
            "flags": sorted(st["_flags"]),
            "pools": st["_pools"],
            "strongly_typed": strongly,
            "layers": io["layers"],
            "dla_layers": dla_layers,
            "detailed": st.get("profiling_verbosity") == self.trt.ProfilingVerbosity.DETAILED,
            "opt_level": st.get("builder_optimization_level"),
            "network_flags": network._state["_flags"],
        }
        if st["_cache"] is not None:
            st["_cache"]._state["_data"] += f"[{Path(plan['onnx']).name}]".encode()
        return Fake(self, "IHostMemory", payload=json.dumps(plan).encode())

    def _layer_info(self, inspector: Fake, fmt: Any) -> str:
        plan = inspector._state["_engine"]._state["_plan"]
        if not plan["detailed"]:
            return json.dumps({"Layers": plan["layers"], "Bindings": [t["name"] for t in plan["io"]]})
        layers = (
            [{"Name": f"{{ForeignNode[{','.join(plan['layers'])}]}}", "LayerType": "DLA"}]
            if plan["dla_layers"]
            else [{"Name": n, "LayerType": "CaskConvolution"} for n in plan["layers"]]
        )
        return json.dumps({"Layers": layers, "Bindings": [t["name"] for t in plan["io"]]})

    # -- runtime side ---------------------------------------------------------------
    def _deserialize(self, runtime: Fake, data: Any) -> Fake | None:
        try:
            plan = json.loads(bytes(data))
        except ValueError:
            return None
        if plan.get("fake_engine") != self.spec.version:
            return None  # TensorRT refuses plans of another version
        if plan["dla_core"] is not None and runtime._state.get("DLA_core") != plan["dla_core"]:
            self._fail(runtime, "INVALID_VALUE", "engine built for a DLA core the runtime does not use")
            return None
        return Fake(self, "ICudaEngine", _plan=plan, _io=plan["io"])

    @staticmethod
    def _io(engine: Fake, name: str) -> dict[str, Any]:
        return next(t for t in engine._state["_io"] if t["name"] == name)

    def _set_input_shape(self, ctx: Fake, name: str, shape: Any) -> bool:
        lo, _, hi = ctx._state["_engine"]._state["_plan"]["profiles"][name]
        shape = list(shape)
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        ctx._state["_shapes"][name] = shape
        return True

    def _context_shape(self, ctx: Fake, name: str) -> Any:
        eng = ctx._state["_engine"]
        t = self._io(eng, name)
        if t["mode"] == "input":
            return self.trt.Dims(ctx._state["_shapes"].get(name, t["shape"]))
        n = next(iter(ctx._state["_shapes"].values()))[0]
        return self.trt.Dims([n, *t["shape"][1:]])

    def _execute(self, ctx: Fake, handle: int) -> bool:
        from runtime.backends.ort_session import open_session

        eng = ctx._state["_engine"]
        plan, shapes, addr = eng._state["_plan"], dict(ctx._state["_shapes"]), dict(ctx._state["_addr"])
        io = plan["io"]
        if set(addr) != {t["name"] for t in io} or len(shapes) != sum(t["mode"] == "input" for t in io):
            raise AssertionError("execute_async_v3 before every tensor address / input shape was set")
        path = plan["onnx"]
        if path not in self.sessions:
            body, plugins = _split_plugins(path)
            missing = [n.op_type for n in plugins if n.op_type not in self.plugin_kernels]
            if missing:
                raise AssertionError(
                    f"the harness cannot execute plugin op(s) {missing}; add to plugin_kernels"
                )
            self.sessions[path] = (open_session(body, 1), plugins)
        sess, plugins = self.sessions[path]

        def run() -> None:
            feeds = {}
            for t in io:
                if t["mode"] == "input":
                    dt = np.float16 if t["dtype"] == "HALF" else np.float32
                    n = int(np.prod(shapes[t["name"]])) * np.dtype(dt).itemsize
                    feeds[t["name"]] = (
                        fake_cuda.GPU.locate(addr[t["name"]], n).view(dt).reshape(shapes[t["name"]])
                    )
            values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
            for node in plugins:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                ins = [values[i] for i in node.input]
                values.update(zip(node.output, self.plugin_kernels[node.op_type](ins, attrs)))
            for t in io:
                if t["mode"] != "output":
                    continue
                raw = np.ascontiguousarray(values[t["name"]]).view(np.uint8).reshape(-1)
                fake_cuda.GPU.locate(addr[t["name"]], raw.nbytes)[:] = raw

        fake_cuda.GPU.enqueue(handle, "kernel", Path(path).name, run)
        return True


def install(major: str | None = None) -> TrtWorld:
    """Make ``import tensorrt`` / ``import pycuda.driver`` resolve to the harness in this process."""
    world = TrtWorld(load_real(major))
    sys.modules["tensorrt"] = world.trt
    fake_cuda.install()
    return world


def uninstall() -> None:
    for name in ("tensorrt", "pycuda", "pycuda.driver"):
        sys.modules.pop(name, None)
