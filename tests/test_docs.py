"""The documentation covers what the library registers, and cites only documents it holds.

Fast checks on the sources (no Sphinx build: CI builds the site with warnings as errors):
every estimator ``estimators.names()`` can list has its definition on the theory page, every
family ``problems.names()`` lists has its section on the families page, and no tracked file
names a document or links to a file that is not in the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from jfbbench import estimators, problems
from jfbbench.estimators.deepinv_peers import DEEPINV_PEERS
from jfbbench.estimators.peers import PEERS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Text files whose mentions of documents are checked (data tables and figures are not).
TEXT_SUFFIXES = {".py", ".md", ".rst", ".toml", ".txt", ".cfg", ".sh", ".yml", ".yaml", ".bib", ".ini", ""}
#: A mention of a document: a path or a file name ending in .md, .rst or .bib.
DOCUMENT = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]+\.(?:md|rst|bib)\b")
#: A Markdown link or image target, ``[text](target)``.
MD_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
#: MyST paths: ```{image} path``` / ```{figure} path``` and {download}`text <path>`.
MYST_PATH = re.compile(r"```\{(?:image|figure|literalinclude|include)\}\s+(\S+)|\{download\}`[^`<]*<([^>]+)>`")
#: Documents a build writes, not tracked: name -> the file that writes it (and so names it).
GENERATED = {"index.rst": "docs/conf.py"}  # docs/api/index.rst, the API reference's index


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [ROOT / name for name in out.decode().split("\0") if name]


def text_files() -> list[Path]:
    """Tracked text files, this one aside (its patterns' examples name missing files on purpose)."""
    here = Path(__file__).resolve()
    return [p for p in tracked_files() if p.suffix in TEXT_SUFFIXES and p.is_file() and p.resolve() != here]


def ignored(path: str) -> bool:
    """Whether git ignores ``path`` (an output the build or a run writes, such as docs/api/)."""
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0


def anchors(page: Path, prefix: str) -> dict[str, str]:
    """``(prefix-NAME)=`` targets of a MyST page -> the heading that follows each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(rf"\({re.escape(prefix)}-([A-Za-z0-9_-]+)\)=", line.strip())
        if m:
            following = next((t for t in lines[i + 1 :] if t.strip()), "")
            found[m.group(1)] = following
    return found


def every_estimator_name() -> set[str]:
    """The registered names, and the peers' adapters whatever is installed here."""
    return set(estimators.names()) | set(PEERS) | set(DEEPINV_PEERS)


def test_every_estimator_is_defined_on_the_theory_page():
    defined = anchors(DOCS / "theory.md", "estimator")
    missing = sorted(every_estimator_name() - set(defined))
    assert not missing, f"docs/theory.md has no (estimator-NAME)= section for {missing}"
    for name in every_estimator_name():
        heading = defined[name]
        assert heading.startswith("#") and f"`{name}`" in heading, (name, heading)


def test_theory_page_defines_no_estimator_that_is_not_registered():
    known = every_estimator_name()
    for anchor in anchors(DOCS / "theory.md", "estimator"):
        # a variant of an estimator: (estimator-deq-cg)=, (estimator-unrolled-checkpoint)=
        assert anchor.split("-")[0] in known, f"docs/theory.md defines {anchor!r}, which no estimator registers"


def test_every_family_has_its_section_on_the_families_page():
    sections = anchors(DOCS / "families.md", "family")
    missing = sorted(set(problems.names()) - set(sections))
    assert not missing, f"docs/families.md has no (family-NAME)= section for {missing}"
    for name in problems.names():
        assert sections[name].startswith("#") and f"`{name}`" in sections[name], (name, sections[name])
    stale = sorted(set(sections) - set(problems.names()))
    assert not stale, f"docs/families.md has sections for unregistered families {stale}"


def test_families_page_says_which_family_declares_independent_samples():
    text = (DOCS / "families.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| \[`([a-z_]+)`\]\(#family-\1\) \|.*\| ([^|]+) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    assert set(rows) == set(problems.names())
    for name, said in rows.items():
        declared = bool(getattr(problems.factory(name), "batched", False))
        assert said.startswith("yes") == declared, f"{name}: the table says {said!r}, the class says batched={declared}"


def test_the_pages_are_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in ("theory", "families"):
        assert re.search(rf"^{page}$", index, re.M), page


def resolves(target: str, source: Path) -> bool:
    """A path mentioned in ``source`` names a file of the repository: relative to the file, to
    the root or to docs/, or, a bare name, the name of a tracked file; or an output git ignores."""
    target = target.split("#")[0]
    if not target:
        return True
    candidates = [source.parent / target, ROOT / target, DOCS / target]
    if any(c.exists() for c in candidates):
        return True
    if "/" not in target and any(p.name == target for p in tracked_files()):
        return True
    return any(ignored(str(c.relative_to(ROOT))) for c in candidates if c.is_relative_to(ROOT))


def test_no_file_names_a_document_the_repository_does_not_hold():
    missing = []
    for path in text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in DOCUMENT.finditer(text):
            name = m.group(0).removeprefix("./")
            if name.startswith("/"):  # the tail of a glob, such as **/GALLERY_HEADER.rst
                name = name.lstrip("/")
            if GENERATED.get(name) == str(path.relative_to(ROOT)):
                continue
            if not resolves(name, path):
                missing.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not missing, "documents cited but not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_markdown_links_and_myst_paths_point_to_files_that_exist():
    broken = []
    for path in text_files():
        if path.suffix != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        targets = [m.group(1) for m in MD_LINK.finditer(text)]
        targets += [m.group(1) or m.group(2) for m in MYST_PATH.finditer(text)]
        for target in targets:
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL, or an anchor of the page
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The patterns find a cited note outside the repository and a broken relative link."""
    note = "see " + "THEORY" + ".md, section 2"
    assert [m.group(0) for m in DOCUMENT.finditer(note)] == ["THEORY" + ".md"]
    assert not resolves("THEORY" + ".md", ROOT / "README.md")
    assert resolves("docs/theory.md", ROOT / "README.md")
    assert [m.group(1) for m in MD_LINK.finditer("a [link](docs/nowhere.md#x) here")] == ["docs/nowhere.md#x"]
    assert [m.group(2) for m in MYST_PATH.finditer("{download}`t <../results/README.md>`")] == ["../results/README.md"]
