"""A server that stops answering (SIGSTOP: connections open, no byte moves), with the default
settings: get, put, list and stats fail within 150 s, retries included, and leave nothing behind.

The scenario (``tests/stall_scenario.py``) runs in the background from the moment this test is
collected: it spends two minutes waiting on timeouts, which would otherwise add to the suite.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

LIMIT = 150.0


def test_stopped_server_fails_every_operation_in_time_and_leaves_nothing(
    stall_scenario: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, directory = stall_scenario
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, (directory / "stderr.log").read_text()[-3000:]
    facts = json.loads(out.strip().splitlines()[-1])
    outcomes = facts["outcomes"]
    assert set(outcomes) == {"put", "get", "list", "stats", "get delta", "put delta"}
    for name, outcome in outcomes.items():
        assert outcome["code"] == "RequestTimeout", (name, outcome)
        assert outcome["elapsed"] < LIMIT, f"{name} took {outcome['elapsed']:.0f}s to fail"
    assert facts["downloads_left"] == []  # no partial file, no hidden .dg-part
    assert not facts["client_tmp_left"]
    assert facts["keys"] == [
        "app/reference.bin",
        "app/v1.zip.delta",
        "app/v2.zip.delta",
        "big/served.raw",
    ]
    # The abort could not reach the stopped server: the open upload is the one thing left
    # (for the bucket's lifecycle rule), and it is ours.
    assert facts["open_uploads"] in ([], ["big/upload.raw"])
