"""Rewrite the README's settings table from ``tap-amplitude --about --format markdown``.

    uv run python scripts/update_readme_settings.py

tests/test_cli.py fails whenever the two differ; this is the fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def table(markdown: str) -> list[str]:
    """The first table after the Settings heading."""
    lines = markdown.split("## Settings", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i, line in enumerate(lines[start:], start) if not line.startswith("|"))
    return lines[start:end]


def main() -> None:
    """Swap the old table for the new one, in place."""
    about = subprocess.run(
        [sys.executable, "-m", "tap_amplitude", "--about", "--format", "markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    readme = README.read_text()
    old = "\n".join(table(readme))
    README.write_text(readme.replace(old, "\n".join(table(about)), 1))


if __name__ == "__main__":
    main()
