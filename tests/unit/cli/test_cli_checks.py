"""``lsi publish`` refuses, before sending, an event the workers would dead-letter."""

from __future__ import annotations

import time

import pytest

from lsi.cli.main import main


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""  # nothing was published
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsi publish: error: not published"), err
    return lines[0]


def test_a_misspelt_type_is_refused_with_the_types_allowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # no broker is running for unit tests: an event that passed would fail to connect instead
    assert main(["publish", "--brokers", "127.0.0.1:1", "--user", "u", "--item", "i",
                 "--type", "clik"]) == 2  # fmt: skip
    line = error_line(capsys)
    assert "unknown_type" in line and "'clik'" in line and "click" in line


def test_a_timestamp_in_milliseconds_is_refused_with_the_unit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ms = f"{time.time() * 1000:.0f}"
    assert main(["publish", "--brokers", "127.0.0.1:1", "--user", "u", "--item", "i",
                 "--ts", ms]) == 2  # fmt: skip
    line = error_line(capsys)
    assert "future_timestamp" in line and "milliseconds" in line


def test_an_id_no_event_could_carry_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--brokers", "127.0.0.1:1", "--user", "", "--item", "i"]) == 2
    assert "user_id" in error_line(capsys)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from lsi import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lsi {__version__}"


def test_a_worker_on_a_port_in_use_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # before any broker is contacted (none runs for unit tests)
        assert main(["worker", "--brokers", "127.0.0.1:1", "--web-host", "127.0.0.1",
                     "--web-port", str(port)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsi worker: error: "), err
    assert f"127.0.0.1:{port}" in lines[0] and "--web-port" in lines[0]
