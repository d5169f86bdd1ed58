"""The README's first command: `model-watchdog demo` finishes by itself in under a minute,
shows the rule going pending → firing, the rollback and the recovery, and leaves nothing
running."""

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_demo_tells_the_whole_story_in_under_a_minute():
    result = subprocess.run([sys.executable, "-m", "watchdog.cli", "demo"], capture_output=True, text=True, timeout=90)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "inactive → pending" in out and "→ firing" in out
    assert "rollback decided" in out and "rollback completed" in out
    assert "the target recovered" in out
    finished = out.strip().splitlines()[-1]
    assert "rolled back and recovered" in finished and "1 effective" in finished
    seconds = int(finished.split("demo finished in ")[1].split("s:")[0])
    assert seconds < 60
