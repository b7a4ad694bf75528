"""The end-to-end benchmark's harness: real uvicorn and gunicorn processes answer as expected.

No timing is asserted (benchmarks report; they never gate).  What is checked
is that the servers the benchmark times are the ones it claims to time: the
bare app answers 200 to anything, the authenticated one 401 without a token
or with a forged one and 200 with the sender's tokens, and every server
process is gone afterwards.  With ``wrk`` on PATH, a one-second run in each
mode gets only 2xx answers, and wrk's non-2xx count is shown to work.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from benchmarks import e2e
from benchmarks._fixtures import KeyPool

pytestmark = pytest.mark.timeout(300)

_SPECS = {spec.key: spec for spec in e2e.SERVERS}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> e2e.Fixture:
    return e2e.make_fixture(KeyPool.generate(2), tmp_path_factory.mktemp("e2e"), 64)


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("key", ["uvicorn", "uvicorn_h11", "gunicorn", "gunicorn_sync_w2"])
@pytest.mark.parametrize("auth", [False, True], ids=["bare", "auth"])
def test_server_answers(fixture: e2e.Fixture, key: str, auth: bool) -> None:
    with e2e.serve(_SPECS[key], fixture.receiver if auth else None) as running:
        answers = e2e.check_answers(running, fixture)
        pids = e2e._descendants(running.process.pid)
        assert len(pids) >= _SPECS[key].workers  # The master and its workers run.
    if auth:
        assert answers == {"none": 401, "reused": 200, "fresh": 200, "bad": 401}
    else:
        assert answers == {"none": 200, "reused": 200, "fresh": 200, "bad": 200}
    assert running.process.returncode is not None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _closed(running.port)


def test_check_answers_refuses_a_server_that_checks_nothing(fixture: e2e.Fixture) -> None:
    with e2e.serve(_SPECS["uvicorn"], None) as running:
        running.auth = True  # Claimed to authenticate, but serves the bare app.
        with pytest.raises(RuntimeError, match="expected"):
            e2e.check_answers(running, fixture)


def test_fresh_tokens_are_distinct(fixture: e2e.Fixture) -> None:
    tokens = fixture.fresh_file.read_text().split()
    assert len(tokens) == fixture.fresh_count == len(set(tokens)) == 64
    assert fixture.reused not in tokens


@pytest.mark.skipif(e2e.wrk_path() is None, reason="wrk is not on PATH (apt-get install wrk)")
def test_wrk_runs_count_answers(fixture: e2e.Fixture, tmp_path: Path) -> None:
    scripts = e2e.write_scripts(tmp_path)
    with e2e.serve(_SPECS["uvicorn"], fixture.receiver) as running:
        results = {mode: e2e.run_wrk(running, mode, fixture, 1, scripts) for mode in e2e.MODES}
        sent_fresh = running.fresh_used
    # Without a token every answer is a 401, and wrk's count shows it.
    assert results["plain"].requests > 0
    assert results["plain"].non_2xx == results["plain"].requests
    for mode in ("reused", "fresh"):
        assert results[mode].requests > 0
        assert results[mode].non_2xx == 0
    assert sent_fresh == results["fresh"].requests
