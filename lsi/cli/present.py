"""Recommendation records as a person reads them (``lsi consume``, the demo)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

__all__ = ["format_recommendation"]


def _title(item: str, titles: Mapping[str, str]) -> str:
    title = titles.get(item)
    return f"{item} {title}" if title else item


def format_recommendation(rec: Mapping[str, Any], titles: Mapping[str, str] | None = None,
                          limit: int = 10) -> str:  # fmt: skip
    """A record as a person reads it: who, the gate ("short-term 0.85 / long-term 0.15"), the
    fused list with each item's per-source scores, then each source's own top picks."""
    titles = titles or {}
    lw = float(rec.get("long_weight", 0.0))
    when = time.strftime("%H:%M:%S", time.localtime(float(rec.get("emitted_at") or rec["ts"])))
    lines = [
        f"user {rec['user_id']}  ·  short-term {1 - lw:.2f} / long-term {lw:.2f}  ·  "
        f"{rec.get('source', '?')}  ·  model {rec['model_version']}  ·  "
        f"{rec.get('history_size', 0)} events  ·  {when} ({rec.get('trigger', 'event')})"
    ]
    items = rec.get("items", [])[:limit]
    if not items:
        lines.append("   (nothing to recommend yet)")
    for rank, item in enumerate(items, 1):
        lines.append(
            f"  {rank:>2}. {_title(str(item['item_id']), titles)[:60]:<60} "
            f"score {item['score']:.4f}  (short {item['short_score']:.4f}, long {item['long_score']:.4f})"
        )
    if items:
        for label, key in (("short-term picks", "short_term"), ("long-term picks ", "long_term")):
            picks = rec.get(key) or []
            if picks:
                shown = " · ".join(_title(str(p["item_id"]), titles)[:28] for p in picks[:3])
                lines.append(f"      {label}: {shown}")
    return "\n".join(lines)
