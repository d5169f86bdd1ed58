"""runtime/memory.py: `model-watchdog run` limits glibc to two malloc arenas before any thread
starts, unless the operator set MALLOC_ARENA_MAX; outside glibc it does nothing."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from tests.needs import missing
from watchdog import cli
from watchdog.runtime import memory


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param, value):  # type: ignore[no-untyped-def]
        self.calls.append((param.value, value.value))
        return self.answer


def test_two_arenas_when_the_environment_does_not_say():
    lib = FakeLibc()
    message = memory.limit_arenas({}, lib)
    assert lib.calls == [(memory.M_ARENA_MAX, 2)]
    assert "at most 2" in message


def test_the_environment_variable_wins():
    lib = FakeLibc()
    message = memory.limit_arenas({"MALLOC_ARENA_MAX": "8"}, lib)
    assert lib.calls == []  # glibc read the variable itself at start
    assert "MALLOC_ARENA_MAX=8" in message


def test_a_refusal_or_no_glibc_leaves_the_allocator_alone(monkeypatch):
    assert "refused" in memory.limit_arenas({}, FakeLibc(answer=0))
    monkeypatch.setattr(memory, "_libc", False)  # e.g. musl or macOS: no mallopt found
    assert memory.libc() is None
    assert "not glibc" in memory.limit_arenas({})


def test_run_limits_the_arenas_before_building_the_daemon(monkeypatch, tmp_path):
    order: list[str] = []
    monkeypatch.setattr(memory, "limit_arenas", lambda: order.append("arenas") or "")

    class Stop(Exception):
        pass

    def loading(_args):  # type: ignore[no-untyped-def]
        order.append("load")
        raise Stop

    monkeypatch.setattr(cli, "_load", loading)
    with pytest.raises(Stop):
        cli.cmd_run(argparse.Namespace(clock=None, redactor=None, config=str(tmp_path / "watchdog.yaml")), None, None)
    assert order == ["arenas", "load"]


def test_threads_share_two_arenas_on_glibc():
    """In a fresh process: 16 threads allocating at once end with at most 2 arenas."""
    if memory.libc() is None or not hasattr(memory.libc(), "malloc_info"):
        missing("glibc's malloc_info is not available (CI runs on Debian, whose libc is glibc)")
    script = textwrap.dedent("""
        import ctypes, re, sys, threading
        from watchdog.runtime import memory
        memory.limit_arenas({})
        libc = memory.libc()
        barrier = threading.Barrier(16)
        def work():
            barrier.wait()
            for _ in range(200):
                [bytearray(4096) for _ in range(50)]
        threads = [threading.Thread(target=work) for _ in range(16)]
        [t.start() for t in threads]; [t.join() for t in threads]
        buf, size = ctypes.c_char_p(), ctypes.c_size_t()
        libc.open_memstream.restype = ctypes.c_void_p
        stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
        libc.malloc_info(0, ctypes.c_void_p(stream)); libc.fclose(ctypes.c_void_p(stream))
        print(len(re.findall(r"<heap nr=", ctypes.string_at(buf, size.value).decode())))
    """)
    env = {"PATH": "/usr/bin:/bin"}
    arenas = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                env=env, timeout=60).stdout)
    assert 1 <= arenas <= 2


def test_objects_made_per_rule_series_or_sample_have_no_instance_dict():
    """__slots__ (dataclass slots=True): 40 bytes less each; a 1,000 × 10 fleet holds tens of
    thousands of them (bench/README.md, "Memory")."""
    from watchdog.config.schema import LoadedRule
    from watchdog.promql.ast import Matcher
    from watchdog.rules.state import SeriesState
    from watchdog.rules.verdict import Outcome, Verdict
    from watchdog.samples import QueryResult, Sample

    from watchdog.promql import parse

    query = parse('histogram_quantile(0.99, sum by (le) (rate(x_bucket{instance="a:1"}[1m]))) > -1')
    nodes, stack = [], [query]
    while stack:
        nodes.append(stack.pop())
        stack.extend(nodes[-1].children())
    for obj in (Sample((), 1.0), QueryResult([]), Verdict((), Outcome.OK, 1.0, ""), SeriesState(),
                LoadedRule("t", None, "f"), Matcher("a", "=~", "b.*"), *nodes):  # type: ignore[arg-type]
        assert not hasattr(obj, "__dict__"), type(obj).__name__


def test_selectors_of_one_metric_share_its_name_matcher():
    from watchdog.promql import parse

    a, b = parse('up{instance="host-a:9090"}'), parse('up{instance="host-b:9090"}')
    assert a.all_matchers[0] is b.all_matchers[0]  # type: ignore[attr-defined]
    assert [str(m) for m in a.all_matchers] == ['__name__="up"', 'instance="host-a:9090"']  # type: ignore[attr-defined]


class FakeTrimLibc(FakeLibc):
    def __init__(self) -> None:
        super().__init__()
        self.trims: list[int] = []

    def malloc_trim(self, pad):  # type: ignore[no-untyped-def]
        self.trims.append(pad.value)
        return 1


def test_trim_hands_free_pages_back_and_does_nothing_outside_glibc(monkeypatch):
    lib = FakeTrimLibc()
    assert memory.trim(lib) is True and lib.trims == [0]
    monkeypatch.setattr(memory, "_libc", False)
    assert memory.trim() is False


DAEMON_CONFIG = """\
interval: 15s
state: state.db
sources:
  model: {type: scrape, url: "http://127.0.0.1:9/metrics"}
actuators:
  hook: {type: webhook, url: "http://127.0.0.1:9/rollback"}
targets:
  fraud-model: {rollback: [hook]}
"""


def test_every_tick_ends_with_a_trim(monkeypatch, tmp_path):
    from watchdog.clock import FakeClock
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    lib = FakeTrimLibc()
    monkeypatch.setattr(memory, "_libc", lib)
    (tmp_path / "watchdog.yaml").write_text(DAEMON_CONFIG)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    try:
        lib.trims.clear()
        daemon.run_once()
        assert lib.trims == [0]
        daemon.clock.advance(15)  # type: ignore[attr-defined]
        daemon.run_once()
        assert lib.trims == [0, 0]
    finally:
        daemon.close()
