"""The head registry (runtime.heads.registry) is the one place that knows head kinds.

Head-kind names appear as string literals only in the registry's head modules and in the
model heads (build/models/*head*.py); every other module asks the registry. A decoder for a
new kind plugs into the one assembler (runtime.pose.assemble) with nothing else changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from runtime.heads import registry
from runtime.heads.base import PLUGIN_MODES, DecodeContext, HeadSpec, NetDecode, Outputs
from runtime.heads.decode import decode_heatmaps, decode_probmaps
from runtime.heads.double_decode import merge_double
from runtime.heads.grid import heatmap_to_image
from runtime.heads.probfields import ProbFieldsDecoder
from runtime.pose.assemble import decode_people

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("runtime", "build", "bench", "measure", "calib", "tools", "kernels", "tests/trt_harness")
ALLOWED = {"runtime/heads/heatmap.py", "runtime/heads/probmap.py", "runtime/heads/probmap_dh.py"}
ALLOWED |= {"runtime/heads/simcc.py"}
ALLOWED |= {"runtime/heads/base.py"}  # the plugin's mode names (kernels' enum order)


def _allowed(rel: str) -> bool:
    return rel in ALLOWED or (rel.startswith("build/models/") and "head" in Path(rel).name)


def _head_literals(path: Path) -> list[int]:
    kinds = set(registry.HEAD_KINDS) | set(PLUGIN_MODES)
    tree = ast.parse(path.read_text(), str(path))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in kinds]


def test_head_kind_names_live_in_the_registry_and_the_model_heads_only():
    found = {}
    for d in CODE_DIRS:
        for path in sorted((REPO / d).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not _allowed(rel) and (lines := _head_literals(path)):
                found[rel] = lines
    assert found == {}, f"head-kind names compared outside runtime/heads (ask the registry): {found}"


def test_the_scan_sees_a_literal():  # the check above cannot pass by reading nothing
    assert _head_literals(REPO / "runtime/heads/heatmap.py")
    assert _head_literals(REPO / "build/models/heads.py")


def _maps(seed: int, n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(64 * 48, 0.05), size=(n, 17))
    return p.reshape(n, 17, 64, 48).astype(np.float32)


def test_each_kind_decodes_with_its_maths():
    hm, pm, outer = _maps(0), _maps(1), _maps(2)
    pres = np.random.default_rng(3).uniform(size=(3, 17)).astype(np.float32)
    c, s, p = registry.decode_outputs(registry.HEATMAP, {"heatmaps": hm})
    for got, want in zip((c, s), decode_heatmaps(hm)):
        np.testing.assert_array_equal(got, want)
    assert (p == 1).all()  # no presence head: 1
    c, s, p = registry.decode_outputs(registry.PROBMAP, {"probmaps": pm, "presence": pres}, 1.0, 0.4)
    for got, want in zip((c, s), decode_probmaps(pm)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(p, pres, rtol=1e-6)
    # the double map is recorded as "probmap" in the manifest; its outer output selects its decoder
    outs = {"probmaps": pm, "presence": pres, "outer_probmaps": outer}
    assert registry.decoder_for(registry.PROBMAP, outs).spec.kind == registry.PROBMAP_DH
    c, s, _ = registry.decode_outputs(registry.PROBMAP, outs, 1.0, 0.4)
    want = merge_double(*decode_probmaps(pm), outer, pres, 0.4)
    np.testing.assert_array_equal(c, want[0])
    np.testing.assert_array_equal(s, want[1])
    assert not np.array_equal(c, decode_probmaps(pm)[0])  # some keypoints did come from the outer map


def test_fused_plugin_outputs_are_used_as_they_are():
    kp = np.random.default_rng(4).uniform(0, 40, size=(2, 17, 2)).astype(np.float32)
    sc = np.full((2, 17), 0.5, np.float32)
    for kind in (registry.HEATMAP, registry.PROBMAP):
        c, s, _ = registry.decode_outputs(kind, {"keypoints": kp, "keypoint_scores": sc})
        np.testing.assert_array_equal(c, kp)
        np.testing.assert_array_equal(s, sc)


def test_unknown_kinds_are_named():
    with pytest.raises(ValueError, match="unknown head kind 'integral'.*heatmap, probmap.*simcc"):
        registry.decoder_for("integral", ["x"])
    with pytest.raises(ValueError, match="unknown head kind 'integral'"):
        registry.head_spec("integral")
    assert registry.decodes_probability_maps(registry.PROBMAP)
    assert not registry.decodes_probability_maps(registry.HEATMAP)
    assert not registry.decodes_probability_maps("score")  # the router's "head"


class _OneDimHead:
    """A SimCC-like head for the test: 1-D x and y classification over 2x-finer bins."""

    spec = HeadSpec(kind="test-1d", manifest_kind="test-1d", map_output="simcc_x")

    def decode(self, outs: Outputs, ctx: DecodeContext) -> NetDecode:
        x, y = np.asarray(outs["simcc_x"]), np.asarray(outs["simcc_y"])
        coords = np.stack([x.argmax(-1), y.argmax(-1)], -1).astype(np.float32)
        scores = np.minimum(x.max(-1), y.max(-1)).astype(np.float32)
        return NetDecode(coords, scores, np.ones(scores.shape, np.float32), (y.shape[-1], x.shape[-1]))


def test_a_new_kind_is_one_decoder_and_its_registration(monkeypatch):
    monkeypatch.setitem(registry.DECODERS, "test-1d", _OneDimHead())
    n, rng = 2, np.random.default_rng(5)
    outs = {"simcc_x": rng.uniform(size=(n, 17, 384)), "simcc_y": rng.uniform(size=(n, 17, 512))}
    centers = np.array([[100.0, 200.0], [50.0, 60.0]])
    scales = np.array([[96.0, 128.0], [48.0, 64.0]])
    fields = ProbFieldsDecoder({}, ())
    people = decode_people("test-1d", outs, centers, scales, DecodeContext(), fields)
    bins = np.stack([outs["simcc_x"].argmax(-1), outs["simcc_y"].argmax(-1)], -1)
    want = heatmap_to_image(bins, centers, scales, (512, 384))
    np.testing.assert_allclose(people.keypoints[..., :2], want, rtol=1e-6)
    assert not people.prob.has.any()  # not a probability-map head: no ProbPose fields


def test_every_registered_kind_has_a_model_head_and_back():
    from build.models.registry import HEAD_CHOICES, HEAD_CLASSES, decode_kind

    assert set(HEAD_CLASSES) == set(registry.HEAD_KINDS) == set(HEAD_CHOICES)
    assert {decode_kind(k) for k in HEAD_CHOICES} == set(registry.manifest_kinds())
    for kind, cls in HEAD_CLASSES.items():  # the torch head says which manifest kind it exports
        assert getattr(cls, "kind", None) == registry.head_spec(kind).manifest_kind
