"""What a benchmark report measured: the commit of the checkout, whether its tracked files
differed from it, and when. Every ``lsi bench`` report carries these (JSON) and prints them
in its first lines (Markdown)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["git_commit", "provenance", "provenance_line"]

ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> dict[str, Any]:
    """The checkout the run measured: ``commit`` and ``dirty`` (tracked files differ from it);
    both ``None`` outside a git checkout (an installed package)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT, capture_output=True, timeout=30
            ).returncode
            != 0
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha or None, "dirty": dirty if sha else None}


def provenance() -> dict[str, Any]:
    """:func:`git_commit` plus ``date`` (UTC, ISO 8601, to the minute)."""
    return {**git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def provenance_line(report: Mapping[str, Any]) -> str:
    """``Commit `abc123def456` (with uncommitted changes), 2026-12-07 14:14 UTC.``"""
    commit = report.get("commit")
    text = f"Commit `{commit[:12]}`" if commit else "Commit not recorded"
    if report.get("dirty"):
        text += " (with uncommitted changes)"
    if report.get("date"):
        text += f", {report['date']}"
    return text + "."
