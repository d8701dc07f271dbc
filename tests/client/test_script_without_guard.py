"""A plain script without an ``if __name__ == "__main__"`` guard runs once: the Lambda pool's
workers (forkserver) must not re-import it, or each would start another execution."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from visit_helpers import make_repo

from isrflow.local.records import list_records

SCRIPT = """
from isrflow import Client

print("SCRIPT-BODY-RAN", flush=True)
client = Client.local({repo!r}, workers=2)
run = client.process_visit("instrument = 'Generic'", "u/script/run", wait=True, progress=False)
print("STATUS", run.status(), flush=True)
"""


def test_script_without_main_guard_runs_once(tmp_path):
    repo = make_repo(tmp_path, detectors=(0, 1), science=1)
    script = tmp_path / "notebook_like.py"
    script.write_text(textwrap.dedent(SCRIPT.format(repo=str(repo.root))))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("SCRIPT-BODY-RAN") == 1, done.stdout
    assert "STATUS SUCCEEDED" in done.stdout
    records = list_records(repo.root)
    assert [r.status for r in records] == ["SUCCEEDED"]
