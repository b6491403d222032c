"""The pure parts of `lsi bench faults`: the corpus, the traffic, the report arithmetic."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

import pytest

from lsi.bench.corpus import CASE_HEADER, MAX_EVENT_BYTES, TARGETS, Case, build_corpus
from lsi.bench.fault_report import (
    DeadLetter,
    http_key,
    judge,
    markdown,
    tally,
    tracebacks,
    verdict,
)
from lsi.bench.traffic import good_events, probe_users
from lsi.wire.partitioning import partition_of
from lsi.wire.validation import REASONS

NOW = 1_800_000_000.0
CORPUS = build_corpus("r1", NOW, 4)
BAD = [c for c in CORPUS if not c.accepted]


def test_the_corpus_has_at_least_60_distinct_bad_cases_with_unique_names() -> None:
    names = [c.name for c in CORPUS]
    assert len(names) == len(set(names))
    assert len(BAD) >= 60
    assert len({(c.target, c.key, c.value, c.headers) for c in CORPUS}) == len(CORPUS)


def test_every_case_names_a_known_target_and_only_documented_reasons() -> None:
    for case in CORPUS:
        assert case.target in TARGETS
        assert set(case.expect) <= set(REASONS), case.name
        assert "internal_error" not in case.expect
        assert case.headers[0] == (CASE_HEADER, case.name.encode())
        if case.accepted:
            assert case.user and case.event_id, case.name


def test_the_corpus_covers_every_family_the_issue_asks_for() -> None:
    reasons = Counter(r for c in BAD for r in c.expect)
    for reason in REASONS:
        assert reasons[reason] >= 1, reason
    assert {c.target for c in BAD} == set(TARGETS)
    assert max(c.size for c in CORPUS) >= 1_000_000, "a value near the broker's limit"
    assert max(c.size for c in CORPUS) < 1_048_588 - 1024, "but one the broker takes"
    assert any(c.value and b"[" * 1000 in c.value for c in BAD), "deep nesting"
    assert any(c.value and b"\\ud800" in c.value for c in BAD), "a lone surrogate"
    assert any(c.value and len(c.value) > 5000 and b"7" * 5000 in c.value for c in BAD)
    assert any(k == "lsi-dlq-reason" for c in BAD for k, _ in c.headers), "a forged reason"
    assert any(c.accepted and c.size == MAX_EVENT_BYTES for c in CORPUS), "exactly at the limit"


def test_accepted_edges_are_valid_json_events_whose_key_is_their_user() -> None:
    for case in (c for c in CORPUS if c.accepted):
        data = json.loads(case.value or b"")
        assert data["event_id"] == case.event_id
        assert str(data["user_id"]) == case.user
        assert case.key == (case.user or "").encode()
        assert data["ts"] <= NOW


def test_item_delta_cases_are_routed_to_an_explicit_partition_with_a_matching_key() -> None:
    for case in (c for c in CORPUS if c.target == "item-deltas"):
        assert case.partition is not None and case.key is not None
        assert partition_of(case.key, 4) == case.partition
    wrong = next(c for c in CORPUS if c.name == "deltas-wrong-partition")
    item = next(iter(json.loads(wrong.value or b"")))
    assert partition_of(item.encode(), 4) != wrong.partition


def test_good_traffic_has_unique_ids_and_is_seeded() -> None:
    a = list(good_events("synthetic", 500, "run", seed=3))
    b = list(good_events("synthetic", 500, "run", seed=3))
    assert a == b
    assert len({e.event_id for e in a}) == 500
    assert {e.type for e in a} >= {"view", "click", "skip", "rate"}
    assert all(e.weight is None or abs(e.weight) <= 1000 for e in a)


def test_probe_users_cover_every_partition() -> None:
    users = probe_users("p", 8)
    assert [partition_of(u.encode(), 8) for u in users] == list(range(8))


def test_tally_counts_lost_and_double_applied_events_per_user() -> None:
    t = tally({"a": 3, "b": 2, "c": 1, "d": 4}, {"a": 3, "b": 1, "d": 4}, {"a": 5, "b": 1, "d": 4})
    assert (t.users, t.events) == (4, 10)
    assert (t.lost_events, t.users_short) == (2, 2)
    assert (t.double_applied_users, t.double_applied_events) == (1, 2)
    assert t.users_without_record == 1
    assert [e[0] for e in t.examples] == ["a", "b", "c"]
    clean = tally({"a": 2}, {"a": 2}, {"a": 2})
    assert (clean.lost_events, clean.double_applied_users, clean.users_without_record) == (0, 0, 0)


def _letter(case: Case, reason: str, offset: int = 7, **extra: bytes) -> DeadLetter:
    headers = [*case.headers, ("lsi-dlq-reason", reason.encode()),
               ("lsi-source-topic", b"t.events"), ("lsi-source-partition", b"1"),
               ("lsi-source-offset", str(offset).encode())]  # fmt: skip
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return DeadLetter(case.key, case.value, tuple(headers))


def test_judge_matches_dead_letters_by_source_offset_and_checks_the_reason() -> None:
    case = next(c for c in CORPUS if c.name == "not-json")
    at = [("t.events", 1, 7)]
    assert judge(case, at, [_letter(case, "malformed_json")]).ok
    assert judge(case, at, [_letter(case, "malformed_json")] * 2).ok, "a crash may repeat one"
    wrong = judge(case, at, [_letter(case, "internal_error")])
    assert not wrong.ok and wrong.got == ("internal_error",)
    missing = judge(case, at, [_letter(case, "malformed_json", offset=8)])
    assert missing.problems == ("not dead-lettered",)
    assert judge(case, [], []).problems == ("not produced",)


def test_judge_rejects_a_kept_client_reason_header_and_an_altered_copy() -> None:
    case = next(c for c in CORPUS if c.name == "spoofed-dlq-headers")
    letter = _letter(case, "malformed_json")
    result = judge(case, [("t.events", 1, 7)], [letter])
    assert not result.ok and result.got == ("forged",)
    clean = DeadLetter(case.key, case.value, tuple(h for h in letter.headers
                                                   if h[1] not in (b"forged", b"0")))  # fmt: skip
    assert judge(case, [("t.events", 1, 7)], [clean]).ok
    other = next(c for c in CORPUS if c.name == "not-json")
    changed = DeadLetter(other.key, b"{}", _letter(other, "malformed_json").headers)
    assert not judge(other, [("t.events", 1, 7)], [changed]).ok


def test_judge_wants_a_bounded_prefix_with_size_and_digest_for_oversized_values() -> None:
    case = next(c for c in CORPUS if c.name == "oversized-near-broker-limit")
    at = [("t.events", 1, 7)]
    value = case.value or b""
    full = _letter(case, "oversized")
    assert not judge(case, at, [full]).ok, "a full copy of a 1 MB value is not bounded"
    bounded = DeadLetter(case.key, value[:1024], _letter(
        case, "oversized", lsi_original_size=str(len(value)).encode(),
        lsi_original_sha256=hashlib.sha256(value).hexdigest().encode()).headers)  # fmt: skip
    assert judge(case, at, [bounded]).ok
    no_digest = DeadLetter(case.key, value[:1024], full.headers)
    assert not judge(case, at, [no_digest]).ok
    small = next(c for c in CORPUS if c.name == "oversized-by-one")
    assert judge(small, at, [_letter(small, "oversized")]).ok, "a whole copy of 16 KiB is fine"


def test_judge_takes_a_long_key_cut_to_a_prefix_with_its_size_and_digest() -> None:
    case = next(c for c in CORPUS if c.name == "user-id-5000-digits")
    key = case.key or b""
    at = [("t.events", 1, 7)]
    letter = _letter(case, "invalid_value", lsi_original_key_size=str(len(key)).encode(),
                     lsi_original_key_sha256=hashlib.sha256(key).hexdigest().encode())  # fmt: skip
    assert judge(case, at, [DeadLetter(key[:1024], case.value, letter.headers)]).ok
    bare = _letter(case, "invalid_value")
    assert not judge(case, at, [DeadLetter(key[:1024], case.value, bare.headers)]).ok


def test_judge_fails_an_accepted_edge_that_was_dead_lettered() -> None:
    case = next(c for c in CORPUS if c.name == "accept-skip-min-weight")
    assert judge(case, [("t.events", 1, 3)], []).ok
    assert not judge(case, [("t.events", 1, 3)], [_letter(case, "invalid_value", 3)]).ok


def test_tracebacks_are_found_with_their_exception_line() -> None:
    log = "\n".join([
        "[2026] ERROR something failed",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "    raise ValueError('bad')",
        "ValueError: bad",
        "[2026] WARNING fine",
    ])  # fmt: skip
    assert tracebacks(log) == ["ValueError: bad"]
    assert tracebacks("all good\n") == []


@pytest.mark.parametrize("status,key", [(200, "200"), (503, "503"), (502, "other"),
                                        (None, "connection_error")])  # fmt: skip
def test_http_statuses_are_bucketed(status: int | None, key: str) -> None:
    assert http_key(status) == key


def _report(**over: object) -> dict[str, object]:
    report: dict[str, object] = {
        "invariants": {"lost_events": 0, "double_applied_users": 0, "users_without_record": 0,
                       "unexpected_dead_letters": 0, "users_short": 0, "double_applied_events": 0},
        "restore": {"users_checked": 5, "mismatched": 0, "http_checked": 5, "http_mismatched": 0},
        "crashes": {"unexpected_exits": [], "tracebacks": 0, "traceback_lines": {}},
        "http": {"200": 10, "500": 0},
        "corpus": {"cases": [{"name": "x", "ok": True, "expected": ["oversized"],
                              "got": ["oversized"], "problems": [], "note": "", "target": "events"}],
                   "passed": 1, "failed": 0},
        "timeouts": [],
    }  # fmt: skip
    report.update(over)
    return report


def test_verdict_fails_on_each_broken_invariant() -> None:
    assert verdict(_report()).passed
    bad_inv = dict(_report()["invariants"])  # type: ignore[call-overload]
    bad_inv["lost_events"] = 1
    assert "1 events lost" in verdict(_report(invariants=bad_inv)).failures
    assert not verdict(_report(http={"500": 2})).passed
    crashes = {"unexpected_exits": [{"worker": "w1"}], "tracebacks": 0, "traceback_lines": {}}
    assert not verdict(_report(crashes=crashes)).passed
    assert not verdict(_report(timeouts=["the stream drains"])).passed
    corpus = {"cases": [{"name": "x", "ok": False}], "passed": 0, "failed": 1}
    assert verdict(_report(corpus=corpus)).failures == ["1 corpus cases failed: x"]


def test_markdown_renders_a_report() -> None:
    report = _report(
        events={"good_sent": 10, "duplicates_sent": 1, "good_in_topic": 10, "users": 2,
                "corpus_cases": 1, "recommendation_records": 12},
        settings={"partitions": 4, "emit_policy": "batch", "session_timeout_s": 10.0},
        machine={"kafka": "4.0.1", "cpus": 2}, seconds=12.0, dataset="synthetic", seed=0,
        kills=[{"index": 1, "worker": "w1", "at_events": 5, "restart": "same-dir",
                "seconds_to_http": 3.0, "seconds_to_first_progress": 12.5,
                "seconds_to_all_partitions": None}],
        broker_restart=None, rebalance=None, passed=True, failures=[], commit="abc",
        options={"dataset": "synthetic", "events": 10, "kills": 1, "rate": 5.0, "seed": 0,
                 "wait_s": 90.0, "broker_restart": False, "rebalance": False},
    )  # fmt: skip
    text = markdown(report)
    assert "PASSED" in text and "| SIGKILL 1 (w1) | 5 | same-dir | 3.0 s | 12.5 s | – |" in text
    assert (
        "`lsi bench faults --dataset synthetic --events 10 --kills 1 --rate 5 --seed 0 "
        "--wait 90 --no-broker-restart --no-rebalance`"
    ) in text
    assert "`x`" in text


def test_validation_rules_agree_with_the_corpus_where_they_are_pure() -> None:
    """Every lsi.events case, through lsi.wire.validation alone (the DLQ copy and the worker's
    handling are checked end to end by tests/integration/test_faults.py)."""
    from lsi.errors import InvalidEvent
    from lsi.wire.validation import Limits, validate_event

    now = time.time()
    wrong = []
    for case in build_corpus("r2", now, 4):
        if case.target != "events":
            continue
        try:
            validate_event(case.value, case.key, now, Limits())
            got = "accepted"
        except InvalidEvent as exc:
            got = exc.reason
        if got not in (case.expect or ("accepted",)):
            wrong.append((case.name, case.expect, got))
    assert not wrong
