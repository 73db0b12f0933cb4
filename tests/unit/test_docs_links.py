"""The documentation holds together: every relative link in README.md and docs/ resolves to
a file (and a heading, when it names one), and every `docs/...` reference in the code names
a file and heading that exist, so a comment pointing a reader at a design point never
points at nothing."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Where code may point a reader at the docs.
CODE_PLACES = ["api", "worker", "ledger", "config", "tally", "migrations", "tests", "scripts"]
CODE_FILES = ["docker-compose.yml", "Dockerfile", ".ci/run", "pyproject.toml"]
CODE_SUFFIXES = {".py", ".html", ".js", ".css", ".yml", ".yaml", ".toml", ".mako", ""}

MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_REFERENCE = re.compile(r"\bdocs/[A-Za-z0-9_./-]+\.md(?:#[A-Za-z0-9_-]+)?")


def _prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown file (repeats get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def _broken(target: str, source: Path) -> str | None:
    """Why a relative link from `source` does not resolve, or None."""
    path_part, _, anchor = target.partition("#")
    resolved = (source.parent / path_part).resolve() if path_part else source
    if not resolved.exists():
        return f"{target}: no file {os.path.relpath(resolved, ROOT)}"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"{target}: {resolved.name} has no heading #{anchor}"
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_in_the_docs_resolves(document: Path) -> None:
    broken = []
    for line in _prose_lines(document):
        for target in MARKDOWN_LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            fault = _broken(target, document)
            if fault:
                broken.append(fault)
    assert not broken, f"{document.name}: " + "; ".join(broken)


def _code_files() -> list[Path]:
    files = [ROOT / name for name in CODE_FILES if (ROOT / name).exists()]
    for place in CODE_PLACES:
        for path in sorted((ROOT / place).rglob("*")):
            if path.is_file() and path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts:
                files.append(path)
    return files


def test_every_docs_reference_in_the_code_names_a_file_and_heading() -> None:
    broken = []
    for path in _code_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for reference in CODE_REFERENCE.findall(line):
                fault = _broken(reference, ROOT / "README.md")
                if fault:
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {fault}")
    assert not broken, "\n".join(broken)


def test_the_code_points_at_the_docs_for_what_it_does_not_explain_itself() -> None:
    # The check above must have something to check: design points are cited by heading.
    cited = {
        reference
        for path in _code_files()
        if path != Path(__file__).resolve()
        for reference in CODE_REFERENCE.findall(path.read_text(errors="replace"))
    }
    assert any(reference.startswith("docs/design.md#") for reference in cited), cited


def test_no_comment_or_doc_cites_a_document_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN §|\.\./shared|DESIGN\.md")
    cited = [
        str(path.relative_to(ROOT))
        for path in [*_code_files(), *DOCUMENTS]
        if path != Path(__file__).resolve() and outside.search(path.read_text(errors="replace"))
    ]
    assert not cited, cited


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Processing guarantees", "processing-guarantees"),
        ("`tally bench`: what it prints", "tally-bench-what-it-prints"),
        ("Holds: authorize now, capture or void", "holds-authorize-now-capture-or-void"),
        ("The raw-SQL baseline", "the-raw-sql-baseline"),
    ],
)
def test_anchors_are_made_as_github_makes_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
