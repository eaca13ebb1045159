"""The documentation stays complete and navigable as the code moves.

A newcomer reads the README, follows its links to the topic pages and finds
every module in docs/ARCHITECTURE.md. These checks fail the unit step when a
module is added without a line there, a relative link or anchor breaks, the
README grows back into a notebook, a page under docs/ is orphaned, or code
cites design text that is not in the repository.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 300
PACKAGES = ("build", "runtime", "calib", "measure", "kernels", "bench", "tools")
NATIVE_SUFFIXES = (".cu", ".cuh", ".cpp", ".h")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Built from parts, and this file is left out of the scan, so it does not match its own checks.
OUTSIDE_DESIGN = "shared/" + "DESIGN.md"
BARE_DESIGN_CITE = re.compile(r"(?<![/\w.])DESIGN" + r" section")


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def _is_code_module(p: Path) -> bool:
    """An ``__init__.py`` counts as a module when it does more than name its package."""
    if p.name != "__init__.py":
        return True
    body = ast.parse(p.read_text()).body
    return any(not isinstance(n, (ast.Expr, ast.Import, ast.ImportFrom)) for n in body)


def _repo_files() -> list[str]:
    """Tracked files plus new ones not yet added (but not ignored build outputs)."""
    r = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:  # not a git checkout (an unpacked sdist): every file under the repo
        return sorted(
            p.relative_to(REPO).as_posix()
            for p in REPO.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".git" not in p.parts
        )
    return sorted({name for name in r.stdout.splitlines() if (REPO / name).is_file()})


def _modules() -> list[str]:
    out = [name for name in ("CMakeLists.txt", "cmake/TensorRTVersion.cmake") if (REPO / name).is_file()]
    for name in _repo_files():
        p = Path(name)
        if p.parts[0] not in PACKAGES:
            continue
        if (
            (p.suffix == ".py" and _is_code_module(REPO / p))
            or p.suffix in NATIVE_SUFFIXES
            or (p.parts[0] == "tools" and p.suffix == ".sh")
        ):
            out.append(name)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    s = heading.strip().lower().replace("`", "")
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    """Anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.*)$", text, flags=re.M):
        s = slug(m.group(1))
        out.add(f"{s}-{seen[s]}" if s in seen else s)
        seen[s] = seen.get(s, 0) + 1
    return out


def _links(md: Path) -> list[tuple[str, Path | None, str]]:
    """(raw target, file it points to or None for same-page, anchor) of each relative link."""
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans hold brackets, not links
    out = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        out.append((target, (md.parent / path).resolve() if path else None, anchor))
    return out


def test_readme_is_a_front_page():
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines (limit {README_MAX_LINES}): move the detail to a "
        "topic page under docs/ and link it"
    )


def test_every_module_is_named_in_architecture():
    arch = (DOCS / "ARCHITECTURE.md").read_text()
    missing = [m for m in _modules() if f"`{m}`" not in arch]
    assert not missing, (
        "docs/ARCHITECTURE.md does not name these modules; add a row saying what each owns: "
        + ", ".join(missing)
    )


def test_architecture_names_no_module_that_is_gone():
    arch = (DOCS / "ARCHITECTURE.md").read_text()
    packages = "|".join(PACKAGES)
    named = set(re.findall(rf"`((?:{packages})/[\w/.-]+\.(?:py|cu|cuh|cpp|h|sh))`", arch))
    gone = sorted(m for m in named if not (REPO / m).is_file())
    assert not gone, f"docs/ARCHITECTURE.md names files that do not exist: {', '.join(gone)}"


@pytest.mark.parametrize("md", _markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(md: Path):
    broken = []
    for target, path, anchor in _links(md):
        dest = path or md
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {dest.relative_to(REPO)})")
    assert not broken, f"{md.relative_to(REPO)}: broken links: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [(REPO / "README.md").resolve()]
    while todo:
        md = todo.pop()
        if md in seen:
            continue
        seen.add(md)
        todo += [p for _, p, _ in _links(md) if p is not None and p.suffix == ".md" and p.exists()]
    orphans = sorted(p.relative_to(REPO).as_posix() for p in DOCS.rglob("*.md") if p.resolve() not in seen)
    assert not orphans, "pages no link from README.md leads to: " + ", ".join(orphans)


def _tracked_text_files() -> list[Path]:
    out = []
    for name in _repo_files():
        p = REPO / name
        if p == Path(__file__).resolve() or p.suffix in (".png", ".pth", ".onnx", ".mp4", ".avi", ".jpg"):
            continue
        try:
            p.read_text()
        except UnicodeDecodeError:
            continue
        out.append(p)
    return out


def test_docs_pages_cited_by_the_code_exist():
    """Comments, messages and scripts that send a reader to docs/PAGE.md send them somewhere real."""
    bad = []
    for p in _tracked_text_files():
        for page in set(re.findall(r"\bdocs/([\w./-]+\.md)", p.read_text())):
            if not (DOCS / page).is_file():
                bad.append(f"{p.relative_to(REPO).as_posix()}: docs/{page}")
    assert not bad, "citations of pages that do not exist: " + ", ".join(sorted(bad))


def test_design_is_cited_inside_the_repository():
    """Design citations point at docs/DESIGN.md and at a section it has."""
    design = (DOCS / "DESIGN.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", design, flags=re.M))
    bad = []
    for p in _tracked_text_files():
        text = p.read_text()
        rel = p.relative_to(REPO).as_posix()
        if OUTSIDE_DESIGN in text:
            bad.append(f"{rel}: cites ../{OUTSIDE_DESIGN}, which a clone does not have")
        if BARE_DESIGN_CITE.search(text):
            bad.append(f"{rel}: cites 'DESIGN section N' without its path; write docs/DESIGN.md section N")
        for n in re.findall(r"docs/DESIGN\.md section (\d+)", text):
            if n not in sections:
                bad.append(f"{rel}: cites docs/DESIGN.md section {n}, which does not exist")
    assert not bad, "\n".join(bad)
