"""Nothing a client sends can forge a log line: control characters are escaped in text logs, in the
API and in the workers' format alike, and JSON logs stay one object per line."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from workers.logformat import EscapingFormatter, escape_control

FORGED = "/jobs/%0d%0aX-Injected:%201"
NUL = "/jobs/a%00b%1b[31m"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_forged_path_stays_on_its_own_line(settings: ApiSettings, capsys: pytest.CaptureFixture[str],
                                             fmt: str) -> None:
    with TestClient(create_app(settings.model_copy(update={"log_format": fmt}))) as client:
        capsys.readouterr()
        assert client.get(FORGED).status_code == 404
        assert client.get(NUL).status_code == 404
        err = capsys.readouterr().err
    access = [line for line in err.splitlines() if "service.access" in line]
    assert len(access) == 2, err
    assert not any(line.startswith("X-Injected") for line in err.splitlines())
    assert "\x00" not in err and "\x1b" not in err and "\r" not in err
    if fmt == "text":
        assert "/jobs/\\x0d\\x0aX-Injected: 1" in access[0] and "/jobs/a\\x00b\\x1b[31m" in access[1]
    else:
        assert json.loads(access[0])["path"] == "/jobs/\r\nX-Injected: 1"


def test_the_formatter_escapes_message_arguments_and_tracebacks() -> None:
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("bad\nFORGED line")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "file %s", ("a\r\nb\u2028c",), sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert lines[0] == "ERROR file a\\x0d\\x0ab\\u2028c"
    assert all(line.startswith("    ") for line in lines[1:]) and "FORGED" in lines[-1]
    assert escape_control("tab\there\x7f\x85") == "tab\\x09here\\x7f\\x85"
