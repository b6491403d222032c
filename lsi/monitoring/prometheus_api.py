"""A small client of Prometheus' HTTP API (``/api/v1/query``, ``query_range``, ``rules``).

Used by ``lsi report metrics`` and ``lsi monitoring check``; standard library only. Every
failure a user can meet (server down, wrong URL, a query Prometheus rejects, an answer in an
unexpected shape) is an :class:`~lsi.errors.LsiError` whose message says what to do.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsi.errors import ConfigError, LsiError

__all__ = ["PrometheusClient", "Series", "check_url"]


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"--prometheus must be an http:// or https:// URL such as http://127.0.0.1:9090, "
            f"got {url!r}"
        )
    return url.rstrip("/")


# -- the Prometheus HTTP API -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query's answer: its labels and samples (``nan``, ``±inf`` kept)."""

    labels: Mapping[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]

    def last(self) -> float | None:
        """The last finite value, or ``None`` if there is none."""
        return next((v for v in reversed(self.values) if math.isfinite(v)), None)


class PrometheusClient:
    """Instant and range queries against Prometheus' HTTP API, errors as :class:`LsiError`.

    Args:
        base_url: e.g. ``http://127.0.0.1:9090`` (a path prefix behind a proxy is kept).
        timeout_s: seconds to wait for each answer.
    """

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = check_url(base_url)
        self.timeout_s = timeout_s

    def query(self, expr: str, at: float) -> list[Series]:
        """``expr`` evaluated at unix time ``at`` (one sample per series)."""
        return self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"}, expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """``expr`` evaluated at ``start, start + step, …, ≤ end``."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": repr(step)}
        return self._get("/api/v1/query_range", params, expr)

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The ``data`` of any ``GET`` of the HTTP API, e.g. ``api("/api/v1/targets")``."""
        return self._request(path, params or {}, path)

    def recording_rules(self) -> list[tuple[str, str]]:
        """``(recorded series, expression)`` of every recording rule the server has loaded."""
        data = self._request("/api/v1/rules", {"type": "record"}, "the rules list")
        try:
            return [(str(r["name"]), str(r["query"])) for g in data["groups"] for r in g["rules"]
                    if r.get("type") == "recording"]  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise LsiError(f"Prometheus at {self.base_url} answered /api/v1/rules in an "
                           f"unexpected shape ({exc!r})") from None  # fmt: skip

    def _get(self, path: str, params: Mapping[str, str], expr: str) -> list[Series]:
        data = self._request(path, params, expr)
        try:
            return _series(data)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LsiError(
                f"Prometheus at {self.base_url} answered the query {expr} in an unexpected "
                f"shape ({type(exc).__name__}: {exc}); is it Prometheus 2.x or later?"
            ) from None

    def _request(self, path: str, params: Mapping[str, str], expr: str) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as answer:
                body: bytes = answer.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = _json(exc.read())
            finally:
                exc.close()
            if isinstance(payload, dict) and payload.get("status") == "error":
                raise LsiError(_rejected(expr, payload)) from None
            raise LsiError(
                f"Prometheus at {self.base_url} answered HTTP {exc.code} ({exc.reason}) to "
                f"{path}; check that --prometheus is the base URL of a Prometheus server"
            ) from None
        except urllib.error.URLError as exc:
            raise LsiError(self._unreachable(exc.reason)) from exc
        except (OSError, http.client.HTTPException) as exc:  # timeouts and resets while reading
            raise LsiError(self._unreachable(exc)) from exc
        payload = _json(body)
        if not isinstance(payload, dict):
            raise LsiError(
                f"Prometheus at {self.base_url} did not answer {path} with JSON; check that "
                "--prometheus is the base URL of a Prometheus server"
            )
        if payload.get("status") != "success":
            raise LsiError(_rejected(expr, payload))
        return payload.get("data")

    def _unreachable(self, reason: object) -> str:
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {self.timeout_s:g} s"
        return (
            f"cannot reach Prometheus at {self.base_url} ({reason}); start it or pass --prometheus"
        )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None


def _rejected(expr: str, payload: Mapping[str, Any]) -> str:
    error = payload.get("error") or f"status {payload.get('status')!r}"
    return f"Prometheus rejected the query {expr}: {error}"


def _series(data: Mapping[str, Any]) -> list[Series]:
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return [Series({}, (float(result[0]),), (float(result[1]),))]
    if kind not in ("matrix", "vector"):
        raise ValueError(f"result type {kind!r}, expected matrix, vector or scalar")
    out = []
    for item in result:
        # Native-histogram samples come as "histograms"/"histogram": not ours, skipped.
        samples = item.get("values", []) if kind == "matrix" else [item.get("value")]
        samples = [s for s in samples if s is not None]
        if samples:
            times = tuple(float(t) for t, _ in samples)
            out.append(Series(dict(item["metric"]), times, tuple(float(v) for _, v in samples)))
    return out


# -- options and results ---------------------------------------------------------------------
