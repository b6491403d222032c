"""A recommendation record carries the experiment and the arm that scored it, and only then."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

import lsi
from lsi.errors import InvalidRecord
from lsi.wire.records import RecItem, Recommendation, parse_recommendation

SCHEMA = json.loads(
    (Path(lsi.__file__).parent / "wire" / "schemas" / "recommendation.schema.json").read_text()
)
REC = Recommendation("u1", 1.5, "v000002", 0.25, (RecItem("i1", 0.9, 0.8, 0.95),),
                     source="fused", event_ts=1.0, emitted_at=2.0)  # fmt: skip


def test_the_arm_round_trips_through_json_and_the_schema() -> None:
    rec = replace(REC, experiment="try-v2", arm="candidate")
    data = json.loads(rec.to_json())
    assert (data["experiment"], data["arm"]) == ("try-v2", "candidate")
    jsonschema.validate(data, SCHEMA)
    assert parse_recommendation(rec.to_json()) == rec


def test_without_an_experiment_the_record_is_as_before() -> None:
    data = json.loads(REC.to_json())
    assert "experiment" not in data and "arm" not in data
    jsonschema.validate(data, SCHEMA)
    back = parse_recommendation(data)
    assert back == REC and back.experiment is None and back.arm is None
    assert parse_recommendation({**data, "experiment": None, "arm": None}) == REC


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"experiment": "e"}, "missing_field"),
        ({"arm": "control"}, "missing_field"),
        ({"experiment": "e", "arm": "treatment"}, "invalid_value"),
        ({"experiment": "", "arm": "control"}, "wrong_type"),
    ],
)
def test_half_an_experiment_is_refused(extra: dict[str, str], reason: str) -> None:
    data = {**json.loads(REC.to_json()), **extra}
    with pytest.raises(InvalidRecord) as info:
        parse_recommendation(data)
    assert info.value.reason == reason
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
