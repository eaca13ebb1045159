"""Released checkpoints by name: the one table, and the cached, hash-checked download.

Why: every real checkpoint used to be found and downloaded by hand. A value of a
checkpoint flag (``--small-ckpt rtmpose-s``) that is not an existing file but a name
in :data:`ZOO` is fetched once into the cache (``$DYNPOSE_CACHE``, else
``~/.cache/dynpose``; ``checkpoints/`` below it), verified and reused offline after.

Trust: MMPose names each file with the first 8 hex digits of its SHA-256, and that
prefix is all the table can check. 32 bits are enough to catch a damaged or wrong
file, not to stand for a forged one, so a matched file is never unpickled in full:
its tensors are read with everything else replaced by inert placeholders
(:func:`build.checkpoint.read_published`) and re-saved once, as a plain tensor file
that loads ``weights_only``, beside the download. The manifest records the name, the
URL and the downloaded file's full SHA-256.

``DYNPOSE_ZOO_URL`` replaces ``https://download.openmmlab.com`` in every URL: a
mirror for air-gapped sites (and the tests' loopback server). ``python -m build.zoo
list`` prints the table, ``python -m build.zoo fetch NAME...`` fills the cache ahead
of time.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runtime.errors import InputError, guarded
from runtime.heads.registry import HEATMAP, SIMCC

OFFICIAL = "https://download.openmmlab.com"
MIRROR_ENV = "DYNPOSE_ZOO_URL"
CACHE_ENV = "DYNPOSE_CACHE"
TIMEOUT_S = 30.0  # connect and per-read: a stalled server fails instead of hanging the build
CHUNK = 1 << 20

MMPOSE_LICENSE = "Apache-2.0"
_V1 = f"{OFFICIAL}/mmpose/v1"
_RTM = f"{_V1}/projects/rtmposev1"
_TD = f"{_V1}/body_2d_keypoint/topdown_heatmap/coco"


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint: what it builds (``arch``/``kind``), where it lives, how to verify it.

    ``sha256_prefix``: the 8 hex digits MMPose's file name carries before the date (the
    first 8 of the file's SHA-256). ``coco_ap``: the published COCO val2017 AP (person
    detector boxes for pose nets, person box AP for detectors), for the README's table.
    """

    name: str
    kind: str  # "heatmap" | "simcc" | "probmap" | "detector"
    arch: str  # build.models.registry name (MMDet arch name for detectors)
    url: str
    sha256_prefix: str
    coco_ap: float | None
    input_hw: tuple[int, int] = (256, 192)
    license: str = MMPOSE_LICENSE
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def hash_prefix(filename: str) -> str:
    """The 8 hex digits MMPose puts before the date (``...-8edcf0d7_20230127.pth``) or the end."""
    m = re.search(r"-([0-9a-f]{8})(?:_\d{8})?\.pth$", filename)
    if m is None:
        raise ValueError(f"{filename}: no hash prefix in the name")
    return m.group(1)


def _rtm(
    name: str, arch: str, file: str, ap: float, hw: tuple[int, int] = (256, 192), note: str = ""
) -> ZooEntry:
    return ZooEntry(name, SIMCC, arch, f"{_RTM}/{file}", hash_prefix(file), ap, hw, note=note)


def _td(name: str, arch: str, file: str, ap: float) -> ZooEntry:
    return ZooEntry(name, HEATMAP, arch, f"{_TD}/{file}", hash_prefix(file), ap)


_DET_NOTE = "person-only, trained on COCO + Objects365: check the datasets' terms for your use"
_AIC_NOTE = "trained on AI Challenger + COCO: check the datasets' terms for your use"

# MMPose 1.x model zoo: configs/body_2d_keypoint/rtmpose/coco/rtmpose_coco.md (the COCO-only
# 256x192 checkpoints; at 384x288 MMPose released only the AIC+COCO ones),
# configs/body_2d_keypoint/topdown_heatmap/coco/{resnet,hrnet,mobilenetv2}_coco.md and
# projects/rtmpose/README.md (the person detectors). ProbPose publishes no direct URL with a
# hash-carrying file name, so probpose-s has no entry.
_ENTRIES = (
    _rtm(
        "rtmpose-t",
        "rtmpose-t",
        "rtmpose-tiny_simcc-coco_pt-aic-coco_420e-256x192-e613ba3f_20230127.pth",
        0.682,
    ),
    _rtm(
        "rtmpose-s", "rtmpose-s", "rtmpose-s_simcc-coco_pt-aic-coco_420e-256x192-8edcf0d7_20230127.pth", 0.716
    ),
    _rtm(
        "rtmpose-m", "rtmpose-m", "rtmpose-m_simcc-coco_pt-aic-coco_420e-256x192-d8dd5ca4_20230127.pth", 0.746
    ),
    _rtm(
        "rtmpose-l", "rtmpose-l", "rtmpose-l_simcc-coco_pt-aic-coco_420e-256x192-1352a4d2_20230127.pth", 0.758
    ),
    _rtm(
        "rtmpose-m-384",
        "rtmpose-m-384",
        "rtmpose-m_simcc-aic-coco_pt-aic-coco_420e-384x288-a62a0b32_20230228.pth",
        0.770,
        (384, 288),
        _AIC_NOTE,
    ),
    _rtm(
        "rtmpose-l-384",
        "rtmpose-l-384",
        "rtmpose-l_simcc-aic-coco_pt-aic-coco_420e-384x288-97d6cb0f_20230228.pth",
        0.773,
        (384, 288),
        _AIC_NOTE,
    ),
    _td("res50", "res50", "td-hm_res50_8xb64-210e_coco-256x192-04af38ce_20220923.pth", 0.718),
    _td("hrnet-w32", "hrnet-w32", "td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth", 0.749),
    _td("hrnet-w48", "hrnet-w48", "td-hm_hrnet-w48_8xb32-210e_coco-256x192-0e67c616_20220913.pth", 0.756),
    _td("mbv2", "mbv2", "td-hm_mobilenetv2_8xb64-210e_coco-256x192-55a04c35_20221016.pth", 0.648),
    ZooEntry(
        "rtmdet-nano-person",
        "detector",
        "rtmdet-nano",
        f"{_V1}/projects/rtmpose/rtmdet_nano_8xb32-100e_coco-obj365-person-05d8511e.pth",
        "05d8511e",
        0.403,
        (320, 320),
        note=_DET_NOTE,
    ),
    ZooEntry(
        "rtmdet-m-person",
        "detector",
        "rtmdet-m",
        f"{_V1}/projects/rtmpose/rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth",
        "235e8209",
        0.625,
        (640, 640),
        note=_DET_NOTE,
    ),
)
ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


class ZooError(InputError):
    """A zoo name that cannot be used or fetched (exit 2, one line)."""


# -- where files come from and go --------------------------------------------------------------


def cache_dir() -> Path:
    """``$DYNPOSE_CACHE/checkpoints``, else ``~/.cache/dynpose/checkpoints``."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "dynpose")
    return Path(root).expanduser() / "checkpoints"


def source_url(entry: ZooEntry) -> str:
    """The entry's URL, with ``$DYNPOSE_ZOO_URL`` in place of the official host when set."""
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    if mirror and entry.url.startswith(OFFICIAL):
        return mirror + entry.url[len(OFFICIAL) :]
    return entry.url


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _alternative(flag: str) -> str:
    return f"pass {flag} PATH (a local copy of the file) or set {MIRROR_ENV} to a mirror"


def _stream(url: str, dst: Path, flag: str) -> str:
    """GET ``url`` into the open temp file ``dst`` with a progress bar; the SHA-256 of what came."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(dst, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            got = 0
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dst.name[1:].split(".pth")[0], file=sys.stderr
            ) as bar:
                while block := r.read(CHUNK):
                    f.write(block)
                    h.update(block)
                    got += len(block)
                    bar.update(len(block))
            if total is not None and got != total:
                raise ZooError(
                    f"download ended early ({got} of {total} bytes)", url, f"retry, or {_alternative(flag)}"
                )
    except urllib.error.HTTPError as e:
        raise ZooError(f"download failed: HTTP {e.code} {e.reason}", url, _alternative(flag)) from None
    except urllib.error.URLError as e:
        raise ZooError(f"cannot reach the server ({e.reason}; offline?)", url, _alternative(flag)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise ZooError(f"download broke off ({type(e).__name__})", url, _alternative(flag)) from None
    except OSError as e:
        if isinstance(e, InputError):
            raise
        from runtime.errors import output_error

        raise output_error(e, dst.parent) from None
    return h.hexdigest()


STALE_PART_S = 24 * 3600  # a .part this old belongs to a killed download, not a running one


def _drop_stale_parts(folder: Path, entry: ZooEntry) -> None:
    """Remove what killed downloads of ``entry`` left (a SIGKILL skips every cleanup)."""
    import time

    for part in folder.glob(f".{entry.filename}.*.part"):
        try:
            if time.time() - part.stat().st_mtime > STALE_PART_S:
                part.unlink()
        except OSError:
            pass


def fetch(entry: ZooEntry, flag: str = "--small-ckpt") -> tuple[Path, str]:
    """The verified download of ``entry`` in the cache, and its full SHA-256.

    A cached file whose hash matches is reused without the network; one that does not is
    fetched again (said on stderr). The download goes to a hidden temp file in the cache
    folder and is renamed only once complete and verified, so a killed or failed download
    leaves nothing that looks like a checkpoint."""
    folder = cache_dir()
    path = folder / entry.filename
    if path.is_file():
        digest = _sha256(path)
        if digest.startswith(entry.sha256_prefix):
            return path, digest
        print(
            f"{entry.name}: cached {path} has SHA-256 {digest[:8]}, not {entry.sha256_prefix}; downloading again",
            file=sys.stderr,
        )
    url = source_url(entry)
    _drop_stale_parts(folder, entry)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{entry.filename}.", suffix=".part")
        os.close(fd)
    except OSError as e:
        from runtime.errors import output_error

        raise output_error(e, folder) from None
    tmp = Path(tmp_name)
    try:
        digest = _stream(url, tmp, flag)
        if not digest.startswith(entry.sha256_prefix):
            raise ZooError(
                f"SHA-256 mismatch for {entry.name}: expected {entry.sha256_prefix}, got {digest[:8]}",
                url,
                f"the file is damaged or not the released one; {_alternative(flag)}",
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, digest


def tensors_of(entry: ZooEntry, flag: str = "--small-ckpt") -> tuple[Path, dict[str, Any]]:
    """The weights of ``entry`` as a plain tensor file (loads ``weights_only``) and their source record.

    Made once from the verified download (see the module docstring); the download itself is kept
    so the cache can be re-verified."""
    import torch

    from runtime.safe_io import atomic_write_bytes

    from .checkpoint import read_published

    path, digest = fetch(entry, flag)
    out = path.with_name(f"{path.stem}.tensors-{digest[:16]}.pth")
    if not out.is_file():
        import io

        buf = io.BytesIO()
        torch.save({"state_dict": read_published(path, flag)}, buf)
        atomic_write_bytes(out, buf.getvalue())
    source = {"zoo": entry.name, "url": entry.url, "sha256": digest, "download": str(path)}
    if source_url(entry) != entry.url:
        source["mirror"] = source_url(entry)
    return out, source


# -- flag values -------------------------------------------------------------------------------


def _close(text: str, table: Mapping[str, ZooEntry]) -> str:
    near = difflib.get_close_matches(text, list(table), n=4, cutoff=0.5)
    return f"close names: {', '.join(near)}" if near else f"known names: {', '.join(table)}"


def checkpoint_arg(text: str) -> str:
    """argparse type of a checkpoint flag: an existing file, or a name in the zoo table."""
    p = Path(text)
    if p.is_file():
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text} is not readable")
        return text
    if text in ZOO:
        return text
    if p.exists():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    raise argparse.ArgumentTypeError(
        f"{text} is neither a file nor a released checkpoint name ({_close(text, ZOO)}); "
        "pass a path to a .pth file (python -m build.zoo list shows the names)"
    )


def lookup(value: str, flag: str, arch: str, table: Mapping[str, ZooEntry] | None = None) -> ZooEntry | None:
    """None when ``value`` names an existing file; else its table entry, checked to fit ``arch``."""
    table = ZOO if table is None else table
    if Path(value).is_file():
        return None
    entry = table.get(value)
    if entry is None:
        raise ZooError(
            f"{value} is neither a file nor a released checkpoint name ({_close(value, table)})",
            f"{flag} {value}",
            "pass a path to a .pth file (python -m build.zoo list shows the names)",
        )
    if entry.arch != arch:
        fits = [e.name for e in table.values() if e.arch == arch]
        hint = f"released for {arch}: {', '.join(fits)}" if fits else f"nothing is released for {arch}"
        raise ZooError(
            f"{value} is a checkpoint of {entry.arch} but this config's net is {arch} ({hint})",
            f"{flag} {value}",
            "pass a checkpoint of that architecture, or pick a --config whose net is " + entry.arch,
        )
    return entry


def resolve(
    value: str, flag: str, arch: str, table: Mapping[str, ZooEntry] | None = None
) -> tuple[Path, dict[str, Any] | None]:
    """A checkpoint flag's value as a local path: the file itself, or the zoo entry's weights
    (fetched and verified; the second value is then the manifest's record of the source)."""
    entry = lookup(value, flag, arch, table)
    if entry is None:
        return Path(value), None
    return tensors_of(entry, flag)


# -- python -m build.zoo ---------------------------------------------------------------------


def _status(entry: ZooEntry) -> str:
    path = cache_dir() / entry.filename
    if not path.is_file():
        return "-"
    return "cached" if _sha256(path).startswith(entry.sha256_prefix) else "bad hash"


def format_table(table: Mapping[str, ZooEntry] | None = None) -> str:
    table = ZOO if table is None else table
    rows = [f"{'name':<19} {'kind':<8} {'arch':<14} {'input':>7} {'COCO AP':>7}  {'license':<10} cache"]
    for e in table.values():
        ap = f"{e.coco_ap:.3f}" if e.coco_ap is not None else "-"
        hw = f"{e.input_hw[0]}x{e.input_hw[1]}"
        rows.append(f"{e.name:<19} {e.kind:<8} {e.arch:<14} {hw:>7} {ap:>7}  {e.license:<10} {_status(e)}")
    rows.append(f"cache: {cache_dir()}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from runtime.cli.args import OneLineParser

    p = OneLineParser(
        prog="python -m build.zoo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the released checkpoints, with AP, license and whether cached")
    f = sub.add_parser("fetch", help="download and verify NAMEs into the cache (for air-gapped use)")
    f.add_argument("names", nargs="+", metavar="NAME", choices=list(ZOO))
    a = p.parse_args(argv)
    if a.cmd == "list":
        print(format_table())
        return 0
    for name in a.names:
        entry = ZOO[name]
        path, info = tensors_of(
            entry, "--detector" if entry.kind == "detector" else "--small-ckpt/--large-ckpt"
        )
        print(f"{name}: {info['download']} (sha256 {info['sha256']}); tensors {path}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    return guarded(main, argv, prog="python -m build.zoo")


if __name__ == "__main__":
    raise SystemExit(cli())
