"""Figures that fault, chaos, crash and attack tests print at the end of the test log.

A test calls :func:`report` with a short name and one line of figures (for example
``lost=0 applied_twice=0``); ``tests/conftest.py`` prints every report after pytest's
summary, so CI's log carries the figures each guarantee was checked with.
"""

from __future__ import annotations

from pathlib import Path

REPORT_DIR = Path(__file__).resolve().parent.parent / ".services" / "reports"


def report(name: str, line: str) -> None:
    """Record (replace) the figures of ``name``; shown at the end of the test run."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"{name}.txt").write_text(f"{name}: {line.strip()}\n")


def clear() -> None:
    """Forget the reports of an earlier run."""
    if REPORT_DIR.is_dir():
        for path in REPORT_DIR.glob("*.txt"):
            path.unlink()


def collected() -> list[str]:
    """Every report of this run, sorted by name."""
    if not REPORT_DIR.is_dir():
        return []
    return [p.read_text().strip() for p in sorted(REPORT_DIR.glob("*.txt"))]
