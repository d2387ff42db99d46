"""Every reference to the project's API notes points at a section that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "docs" / "amplitude-api.md"
CITATION = re.compile(r"(?:docs/)?amplitude-api\.md\s+((?:§\d+(?:\.\d+)?(?:,\s*)?)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
SOURCES = ("tap_amplitude", "packages", "tests", "scripts", "benchmarks", "docs")


def _sections() -> set[str]:
    headings = re.findall(r"^#{2,3} §(\d+(?:\.\d+)?) ", NOTES.read_text(), re.MULTILINE)
    return set(headings)


def _citations() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    files = [ROOT / "README.md"]
    for folder in SOURCES:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".sh"}]
    for path in files:
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            found += [(str(path.relative_to(ROOT)), s) for s in SECTION.findall(match.group(1))]
    return found


def test_every_cited_section_exists() -> None:
    sections = _sections()
    assert {"2", "2.2", "2.3", "3.1", "16"} <= sections  # the notes really have the numbering
    citations = _citations()
    assert len(citations) > 20
    missing = [(path, section) for path, section in citations if section not in sections]
    assert not missing


def test_no_code_cites_the_reference_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("tap_amplitude", "packages", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"(?<!docs/)amplitude-api\.md §", path.read_text(encoding="utf-8"))
    ]
    assert not offenders
