"""The arithmetic of ``lsi bench faults``: ground truth against what the workers did.

Pure functions over what the harness read back from the topics, so they are unit-tested
without a broker:

- :func:`tally`: per user, the good events in ``lsi.events`` (distinct ``event_id``) against
  the ``history_size`` of the user's recommendation records. The last record (partition
  order is emission order) below the truth means lost events; any record above it means an
  event was applied twice (a count never falls, so one record above the truth is enough).
- :func:`judge`: one corpus case against the dead letters whose ``lsi-source-*`` headers
  name the offsets it was produced at.
- :func:`verdict`: what fails the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lsi.bench.corpus import CASE_HEADER, Case

__all__ = [
    "HTTP_KEYS",
    "MAX_DLQ_VALUE_BYTES",
    "CaseResult",
    "DeadLetter",
    "Tally",
    "http_key",
    "judge",
    "markdown",
    "reproduce",
    "tally",
    "tracebacks",
    "verdict",
]

#: how HTTP answers are counted (``other``: any other status)
HTTP_KEYS = ("200", "400", "404", "500", "503", "other", "connection_error")

Source = tuple[str, int, int]  # topic, partition, offset

#: most value bytes a dead letter may carry: a bounded copy stays far below the producer's
#: 1,000,000-byte request limit whatever arrived (streams/dlq.py keeps 64 KiB)
MAX_DLQ_VALUE_BYTES = 64 * 1024


def http_key(status: int | None) -> str:
    """The :data:`HTTP_KEYS` bucket of a status (``None``: no answer at all)."""
    if status is None:
        return "connection_error"
    text = str(status)
    return text if text in HTTP_KEYS else "other"


@dataclass(frozen=True, slots=True)
class Tally:
    """Ground truth against the records.

    Attributes:
        users: users with at least one good event in the topic.
        events: good events in the topic (distinct ids).
        lost_events: sum over users of truth − last ``history_size`` (where positive).
        users_short: users whose last record is below the truth.
        double_applied_users: users with a record above the truth.
        double_applied_events: sum over those users of highest record − truth.
        users_without_record: users with events and no record at all.
        examples: up to 20 ``(user, truth, last, highest)`` of the users in error.
    """

    users: int
    events: int
    lost_events: int
    users_short: int
    double_applied_users: int
    double_applied_events: int
    users_without_record: int
    examples: tuple[tuple[str, int, int | None, int | None], ...] = ()


def tally(truth: Mapping[str, int], last: Mapping[str, int], peak: Mapping[str, int]) -> Tally:
    """Compare ``truth`` (user → good events in the topic) with ``last`` and ``peak``
    (user → the ``history_size`` of their last and of their highest record).

    >>> tally({"a": 3, "b": 2, "c": 1}, {"a": 3, "b": 1}, {"a": 4, "b": 1})
    ... # doctest: +NORMALIZE_WHITESPACE
    Tally(users=3, events=6, lost_events=2, users_short=2, double_applied_users=1,
          double_applied_events=1, users_without_record=1,
          examples=(('a', 3, 3, 4), ('b', 2, 1, 1), ('c', 1, None, None)))
    """
    lost = short = double = double_events = without = 0
    examples: list[tuple[str, int, int | None, int | None]] = []
    for user in sorted(truth):
        n = truth[user]
        if n <= 0:
            continue
        got, top = last.get(user), peak.get(user)
        bad = False
        if got is None:
            without += 1
        if (got or 0) < n:
            lost += n - (got or 0)
            short += 1
            bad = True
        if top is not None and top > n:
            double += 1
            double_events += top - n
            bad = True
        if bad and len(examples) < 20:
            examples.append((user, n, got, top))
    return Tally(
        len([n for n in truth.values() if n > 0]),
        sum(truth.values()),
        lost,
        short,
        double,
        double_events,
        without,
        tuple(examples),
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, as read back."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def all(self, name: str) -> list[bytes]:
        return [v for k, v in self.headers if k == name]

    def last(self, name: str) -> str | None:
        values = self.all(name)
        return values[-1].decode(errors="replace") if values else None

    @property
    def source(self) -> Source | None:
        """Where the worker says the record was (its own headers come last)."""
        topic, part, off = (self.last(f"lsi-source-{k}") for k in ("topic", "partition", "offset"))
        if topic is None or part is None or off is None:
            return None
        try:
            return topic, int(part), int(off)
        except ValueError:
            return None

    @property
    def reasons(self) -> list[str]:
        return [v.decode(errors="replace") for v in self.all("lsi-dlq-reason")]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """How one corpus case fared."""

    name: str
    category: str
    target: str
    expected: tuple[str, ...]
    got: tuple[str, ...]
    ok: bool
    problems: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _faithful(original: bytes, copy: bytes, letter: DeadLetter, what: str) -> list[str]:
    """``copy`` is ``original``, or a shorter prefix whose headers name the original's size
    and SHA-256 (``lsi-original-size``/``-sha256``; for keys ``lsi-original-key-…``)."""
    if copy == original:
        return []
    if not (len(copy) < len(original) and original.startswith(copy)):
        return [f"the DLQ copy's {what} is neither the original nor a prefix of it"]
    prefix = "lsi-original-" if what == "value" else "lsi-original-key-"
    out = []
    if letter.last(f"{prefix}size") != str(len(original)):
        out.append(f"a cut {what} without {prefix}size = {len(original)}")
    if letter.last(f"{prefix}sha256") != hashlib.sha256(original).hexdigest():
        out.append(f"a cut {what} without the right {prefix}sha256")
    return out


def _copy_problems(case: Case, letter: DeadLetter) -> list[str]:
    """Is the dead letter a copy of what was sent: key and value whole, or a prefix naming
    the original's size and digest; at most :data:`MAX_DLQ_VALUE_BYTES` of value (one near
    the broker's limit cannot be produced whole); the client's headers kept and none of its
    reserved ``lsi-`` headers?"""
    out: list[str] = []
    if case.key is None:
        if letter.key is not None:
            out.append("the DLQ copy has a key; the original had none")
    else:
        out += _faithful(case.key, letter.key or b"", letter, "key")
    value = letter.value or b""
    out += _faithful(case.value or b"", value, letter, "value")
    if len(value) > MAX_DLQ_VALUE_BYTES:
        out.append(
            f"the DLQ copy keeps {len(value):,} bytes of value (at most {MAX_DLQ_VALUE_BYTES:,})"
        )
    if (CASE_HEADER, case.name.encode()) not in letter.headers:
        out.append(f"the client header {CASE_HEADER!r} was not kept")
    reserved = [k for k, _ in letter.headers if k.startswith("lsi-")]
    if len(reserved) != len(set(reserved)):
        out.append("an lsi- header appears twice: client-sent reserved headers were kept")
    return out


def judge(case: Case, produced_at: Sequence[Source], letters: Iterable[DeadLetter]) -> CaseResult:
    """One case against the dead letters of the offsets it was produced at.

    A rejected case passes when it has at least one dead letter (a crash may repeat one),
    every copy carries exactly one ``lsi-dlq-reason`` and that reason is one of
    ``case.expect``, and the copy keeps the original (or a bounded prefix with the
    original's size and SHA-256). An accepted case passes when it has no dead letter
    (its count is checked with the user's in :func:`tally`).
    """
    at = set(produced_at)
    mine = [d for d in letters if d.source in at]
    got = tuple(r for d in mine for r in (d.reasons[:1] or ["(no reason header)"]))
    problems: list[str] = []
    if not at:
        problems.append("not produced")
    elif case.accepted:
        if mine:
            problems.append(f"a valid record was dead-lettered ({', '.join(sorted(set(got)))})")
    elif not mine:
        problems.append("not dead-lettered")
    else:
        for d in mine:
            if len(d.reasons) != 1:
                problems.append(
                    f"{len(d.reasons)} lsi-dlq-reason headers {d.reasons}: "
                    "client-sent reserved headers were kept"
                )
            elif d.reasons[0] not in case.expect:
                problems.append(f"reason {d.reasons[0]}, expected {' or '.join(case.expect)}")
            problems += _copy_problems(case, d)
    unique = tuple(dict.fromkeys(problems))
    return CaseResult(
        case.name, case.category, case.target, case.expect, got, not unique, unique, case.note
    )


def tracebacks(log_text: str) -> list[str]:
    """The exception line (``Type: message``, cut at 200 characters) of every Python
    traceback in a log."""
    out: list[str] = []
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("Traceback (most recent call last)"):
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and (
            not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
        ):
            j += 1
        out.append(lines[j].strip()[:200] if j < len(lines) else "(truncated traceback)")
    return out


@dataclass
class Verdict:
    """What fails a run (empty ``failures``: it passed)."""

    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def verdict(report: Mapping[str, Any]) -> Verdict:
    """Any lost or double-applied event, user without a record, failed restore, worker crash,
    HTTP 500, corpus case with the wrong outcome or timed-out wait fails the run."""
    v = Verdict()
    inv = report["invariants"]
    for key, what in (
        ("lost_events", "events lost"),
        ("double_applied_users", "users with an event applied twice"),
        ("users_without_record", "users without a record"),
        ("unexpected_dead_letters", "dead letters of good events"),
    ):
        if inv[key]:
            v.failures.append(f"{inv[key]} {what}")
    restore = report.get("restore") or {}
    if restore.get("mismatched"):
        v.failures.append(
            f"{restore['mismatched']} users' counts differ after a restore from the changelog alone"
        )
    if restore.get("http_mismatched"):
        v.failures.append(
            f"{restore['http_mismatched']} users' HTTP history_size differs after the restore"
        )
    crashes = report["crashes"]
    if crashes["unexpected_exits"]:
        v.failures.append(f"{len(crashes['unexpected_exits'])} workers exited unexpectedly")
    if crashes["tracebacks"]:
        v.failures.append(f"{crashes['tracebacks']} tracebacks in worker logs")
    if report["http"].get("500"):
        v.failures.append(f"{report['http']['500']} HTTP 500 answers")
    bad = [c["name"] for c in report["corpus"]["cases"] if not c["ok"]]
    if bad:
        v.failures.append(f"{len(bad)} corpus cases failed: {', '.join(bad)}")
    if report["timeouts"]:
        v.failures.append(f"waits that timed out: {'; '.join(report['timeouts'])}")
    return v


def reproduce(opts: Mapping[str, Any]) -> str:
    """The command line that runs a report's options again (defaults left out)."""
    flags = [f"--dataset {opts['dataset']}", f"--events {opts['events']}",
             f"--kills {opts['kills']}", f"--rate {opts['rate']:g}", f"--seed {opts['seed']}"]  # fmt: skip
    for key, flag, default in (("partitions", "--partitions", 4), ("wait_s", "--wait", 180.0),
                               ("restore_users", "--restore-users", 300)):  # fmt: skip
        if opts.get(key, default) != default:
            flags.append(f"{flag} {opts[key]:g}")
    for key, flag in (("broker_restart", "--no-broker-restart"), ("rebalance", "--no-rebalance"),
                      ("corpus", "--no-corpus")):  # fmt: skip
        if not opts.get(key, True):
            flags.append(flag)
    return "lsi bench faults " + " ".join(flags)


def _s(value: Any) -> str:
    return "–" if value is None else f"{value:.1f} s"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the invariants, the disruptions, HTTP, and every case."""
    ev, inv, http = report["events"], report["invariants"], report["http"]
    restore = report.get("restore") or {}
    crashes = report["crashes"]
    commit = report.get("commit") or "unknown"
    md = [
        f"# Fault suite: {report['dataset']}, {len(report['kills'])} kills",
        "",
        f"**{'PASSED' if report['passed'] else 'FAILED'}**. Commit `{commit[:12]}`"
        f"{' (with local changes)' if report.get('dirty') else ''}; "
        f"{report['settings']['partitions']} partitions, emit policy "
        f"`{report['settings']['emit_policy']}`, session timeout "
        f"{report['settings']['session_timeout_s']:g} s; Kafka {report['machine']['kafka']} "
        f"on the same host; {report['machine']['cpus']} CPUs; {report['seconds']:.0f} s.",
        "",
        "Invariants are computed from the topics: per user, the distinct good `event_id`s in "
        "the events topic against the `history_size` of the user's recommendation records.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| good events sent (plus client duplicates) | {ev['good_sent']:,} "
        f"(+{ev['duplicates_sent']:,}) |",
        f"| good events in the topic, users | {ev['good_in_topic']:,}, {ev['users']:,} |",
        f"| events lost | {inv['lost_events']} ({inv['users_short']} users) |",
        f"| users with an event applied twice | {inv['double_applied_users']} "
        f"({inv['double_applied_events']} events) |",
        f"| users without a record | {inv['users_without_record']} |",
        f"| good events dead-lettered | {inv['unexpected_dead_letters']} |",
        f"| restore from the changelog alone (fresh worker, empty dir) | "
        f"{restore.get('users_checked', 0) - restore.get('mismatched', 0)} of "
        f"{restore.get('users_checked', 0)} users exact; HTTP "
        f"{restore.get('http_checked', 0) - restore.get('http_mismatched', 0)} of "
        f"{restore.get('http_checked', 0)} |",
        f"| worker crashes (unexpected exits / tracebacks in logs) | "
        f"{len(crashes['unexpected_exits'])} / {crashes['tracebacks']} |",
        f"| HTTP answers | {', '.join(f'{k}: {v}' for k, v in http.items())} |",
        f"| corpus cases as specified | {report['corpus']['passed']} of "
        f"{report['corpus']['passed'] + report['corpus']['failed']} |",
        "",
        "## Disruptions",
        "",
        "Seconds from the disruption (kill, broker up, second worker stopped) to the first new "
        "recommendation record and to a record for a probe user on every partition.",
        "",
        "| disruption | at event | restart | HTTP up | first progress | all partitions |",
        "|---|---|---|---|---|---|",
    ]
    for k in report["kills"]:
        md.append(
            f"| SIGKILL {k['index']} ({k['worker']}) | {k['at_events']:,} | "
            f"{k['restart']} | {_s(k['seconds_to_http'])} | "
            f"{_s(k['seconds_to_first_progress'])} | {_s(k['seconds_to_all_partitions'])} |"
        )
    if report.get("broker_restart"):
        b = report["broker_restart"]
        md.append(
            f"| broker restart (down {b['seconds_down']:.1f} s) | {b['at_events']:,} | "
            f"same data dir | – | {_s(b['seconds_to_first_progress'])} | "
            f"{_s(b['seconds_to_all_partitions'])} |"
        )
    if report.get("rebalance"):
        r = report["rebalance"]
        md.append(
            f"| rebalance 1 → 2 → 1 (shared after {_s(r['seconds_to_share_the_work'])}) "
            f"| {r['at_events']:,} | – | – | {_s(r['seconds_to_first_progress'])} | "
            f"{_s(r['seconds_to_all_partitions'])} |"
        )
    md += [
        "",
        "## Bad-input corpus",
        "",
        "| case | topic | expected | dead-letter reason | ok | what |",
        "|---|---|---|---|---|---|",
    ]
    for c in report["corpus"]["cases"]:
        expected = " or ".join(c["expected"]) or "accepted"
        got = ", ".join(sorted(set(c["got"]))) or "–"
        mark = "yes" if c["ok"] else "**no**: " + "; ".join(c["problems"])
        md.append(f"| `{c['name']}` | {c['target']} | {expected} | {got} | {mark} | {c['note']} |")
    if report["failures"]:
        md += ["", "## Failures", "", *[f"- {f}" for f in report["failures"]]]
    if crashes["traceback_lines"]:
        md += ["", "Tracebacks by worker:", ""]
        for worker, lines in crashes["traceback_lines"].items():
            md += [f"- {worker}: " + "; ".join(f"{n}× `{line}`" for line, n in lines.items())]
    md += ["", f"Reproduce: `{reproduce(report['options'])}`", ""]
    return "\n".join(md)
