"""The fast, caching exposition reader against prometheus_client's parser (the reference):
on random and real pages, read fresh and by a reader that has seen earlier pages, the same
samples in the same order, or the same PageError (kind and message)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, generate_latest

from watchdog.samples import Labels, Sample, labels_of
from watchdog.sources.exposition import PageError, PageReader, reference_samples, samples

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from fleetserver import page as fleet_page  # noqa: E402

NAMES = ["requests", "requests_total", "latency_seconds", "up", "x", "a_b:c", "foo_created", "m_count", "m_sum",
         "m_bucket", "m", "_total", "_x", "0bad", "bad-name", "__name__"]
LABEL_NAMES = ["model", "status", "le", "instance", "quantile", "a", "__x", "__name__", "0l", "b c", "_"]
VALUES = ["1", "0", "-1", "2.5", "-0.5", "1e3", "NaN", "+Inf", "-Inf", "nan", "1_000", "0x10", "", "12 1700000000000",
          "3\t5", "7  8", "abc", "+5", "٣", "1e400", "00012"]
LABEL_VALUES = ["ok", "", "a b", 'q\\"uote', "back\\\\slash", "new\\nline", "com,ma", "br}ace", "br{ace", "eq=ual",
                "üñí", "x\\y", "#", " # "]
TYPES = ["counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset", "bogus"]


STAMPS = ["1700000000000", "1700000000123", "1700000000.5", "-5", "0", "1e400", "NaN", "+Inf", "12_3", "x"]


def outcome(read, body: bytes, limit: int) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    """The samples (and which carry which explicit timestamp) or the error."""
    stamped: list[tuple[int, float]] = []
    reader = getattr(read, "__self__", None)
    try:
        if read is reference_samples:
            found = reference_samples(body, limit, stamped)
        elif read is samples:  # a fresh reader, as samples() is
            reader = PageReader()
            found = reader.samples(body, limit)
        else:
            found = read(body, limit)
    except PageError as exc:
        return "error", (exc.kind, str(exc))
    if reader is not None:
        stamped = reader.stamped
    return "ok", ([(s.labels, repr(s.value)) for s in found], [(i, repr(t)) for i, t in stamped])


def random_line(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(["# TYPE {n} {t}", "# HELP {n} some help", "# {n} just a comment", "#TYPE {n} {t}",
                           "# TYPE {n}", "# HELP", "# TYPE \"{n}\" {t}", ""]).format(n=rng.choice(NAMES),
                                                                                       t=rng.choice(TYPES))
    name = rng.choice(NAMES[:11]) if rng.random() < 0.9 else rng.choice(NAMES)
    suffix = rng.choice(["", "", "", "_total", "_count", "_sum", "_bucket", "_created"])
    labels = []
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        key = rng.choice(LABEL_NAMES[:6]) if rng.random() < 0.92 else rng.choice(LABEL_NAMES)
        value = rng.choice(LABEL_VALUES[:3]) if rng.random() < 0.7 else rng.choice(LABEL_VALUES)
        labels.append(f'{key}="{value}"')
    head = name + suffix
    if labels or rng.random() < 0.1:
        sep = "," if rng.random() < 0.95 else ", "
        head += "{" + sep.join(labels) + ("," if rng.random() < 0.05 else "") + "}"
    value = rng.choice(VALUES[:9]) if rng.random() < 0.85 else rng.choice(VALUES)
    gap = " " if rng.random() < 0.93 else rng.choice(["\t", "  ", ""])
    line = f"{head}{gap}{value}"
    return rng.choice(["  ", "\t", ""]) + line if rng.random() < 0.05 else line


SUFFIXES = {"counter": ["", "", "_total", "_created"], "gauge": [""], "untyped": ["", "_total"], "unknown": [""],
            "histogram": ["_bucket", "_bucket", "_count", "_sum", "_created", ""], "summary": ["", "_count", "_sum"]}


def family_lines(rng: random.Random, serial: list[int]) -> list[str]:
    """A well-formed family most of the time: its TYPE (and HELP), samples of its names."""
    name = rng.choice(["requests", "requests_total", "latency_seconds", "up", "x", "a_b:c", "m"])
    typ = rng.choice(list(SUFFIXES))
    lines = [f"# HELP {name} Help."] if rng.random() < 0.5 else []
    lines.append(f"# TYPE {name} {typ}")
    for _ in range(rng.randint(1, 4)):
        serial[0] += 1
        labels = [f'i="{serial[0]}"'] if rng.random() < 0.9 else []
        if rng.random() < 0.5:
            labels.append(f'{rng.choice(LABEL_NAMES[:6])}="{rng.choice(LABEL_VALUES)}"')
        head = name + rng.choice(SUFFIXES[typ]) + ("{" + ",".join(labels) + "}" if labels else "")
        value = rng.choice(VALUES[:6]) if rng.random() < 0.95 else rng.choice(VALUES[:9])
        if rng.random() < 0.15:  # an explicit timestamp, sometimes a hostile one
            value += " " + (STAMPS[0] if rng.random() < 0.5 else rng.choice(STAMPS))
        lines.append(f"{head} {value}")
    return lines


def random_page(rng: random.Random, lines: int) -> str:
    out: list[str] = []
    serial = [0]
    while len(out) < lines:
        out += family_lines(rng, serial) if rng.random() < 0.8 else [random_line(rng)]
    return "\n".join(out) + rng.choice(["\n", "", "\n\n"])


def test_random_pages_read_as_the_reference_reads_them() -> None:
    rng = random.Random(20261203)
    kept = PageReader()
    differ = []
    for i in range(3000):
        body = random_page(rng, rng.randint(1, 12)).encode()
        limit = rng.choice([0, 0, 0, 3, 8])
        expected = outcome(reference_samples, body, limit)
        for name, read in (("fresh", samples), ("kept", kept.samples)):
            got = outcome(read, body, limit)
            if got != expected:
                differ.append((i, name, body, expected, got))
    assert not differ, differ[:3]


def test_a_reader_that_saw_the_page_before_reads_new_values_as_the_reference() -> None:
    rng = random.Random(7)
    for _ in range(300):
        lines = [random_line(rng) for _ in range(rng.randint(2, 15))]
        reader = PageReader()
        for _ in range(4):  # the same series parts, new values, sometimes a line swapped
            if rng.random() < 0.3:
                lines[rng.randrange(len(lines))] = random_line(rng)
            lines = [_revalue(line, rng) for line in lines]
            body = ("\n".join(lines) + "\n").encode()
            assert outcome(reader.samples, body, 0) == outcome(reference_samples, body, 0), body


def _revalue(line: str, rng: random.Random) -> str:
    if line.startswith("#") or " " not in line:
        return line
    head, _, _ = line.rpartition(" ")
    stamp = f" {rng.choice(STAMPS)}" if rng.random() < 0.2 else ""
    return f"{head} {rng.choice(VALUES[:9])}{stamp}"


def _registry_page(step: int) -> bytes:
    registry = CollectorRegistry()
    c = Counter("requests", "Requests.", ["model", "status"], registry=registry)
    h = Histogram("latency_seconds", "Latency.", ["model"], registry=registry)
    s = Summary("payload_bytes", "Payload.", registry=registry)
    g = Gauge("accuracy", "Accuracy.", ["model"], registry=registry)
    Info("build", "Build.", registry=registry).info({"version": "1.2.3"})
    Enum("state", "State.", states=["up", "down"], registry=registry).state("up")
    for i in range(step + 1):
        c.labels("fraud", "ok").inc(i)
        c.labels('we"ird\\name', "error").inc()
        h.labels("fraud").observe(0.01 * i)
        s.observe(100 * i)
        g.labels("fraud").set(0.9 - i / 100)
    return generate_latest(registry)


@pytest.mark.parametrize("body", [
    fleet_page(1000.0, "m0001"),
    _registry_page(0),
    b"# TYPE x counter\nx 1\n# TYPE x gauge\nx 2\n",  # the family retyped after its samples
    b'# TYPE many gauge\n' + b"".join(b'many{i="%d"} %d\n' % (i, i) for i in range(2000)),
    'probe{name="üñí"} 1\n'.encode(),
    b'probe{name="\xff"} 1\n',  # not UTF-8
    b"requests_total 1\nrequests_total 2\n",  # twice
    b"# TYPE c counter\nc -1\n",  # negative counter
    b"x " + b"1" * 400 + b"\n",  # an integer beyond float: a parse error, not a crash
], ids=["fleet", "prometheus_client", "retyped", "2000", "utf8", "latin1", "twice", "negative", "huge-int"])
def test_real_and_known_bad_pages_read_as_the_reference(body: bytes) -> None:
    reader = PageReader()
    for _ in range(2):  # fresh, then with everything kept
        assert outcome(reader.samples, body, 0) == outcome(reference_samples, body, 0)
        assert outcome(reader.samples, body, 5) == outcome(reference_samples, body, 5)


def test_pages_of_a_registry_over_time_read_as_the_reference() -> None:
    reader = PageReader()
    for step in range(5):
        body = _registry_page(step)
        assert outcome(reader.samples, body, 0) == outcome(reference_samples, body, 0)


def test_the_relabelled_set_is_kept_with_the_series_and_the_kept_set_is_one_pages() -> None:
    calls = []

    def relabel(labels: Labels) -> Labels:
        calls.append(labels)
        return labels_of([*labels, ("instance", "a:1")])

    reader = PageReader(relabel)
    first = reader.samples(b'x{a="1"} 1\ny 2\n', 0)
    second = reader.samples(b'x{a="1"} 5\ny 6\n', 0)
    assert len(calls) == 2  # relabelled once per series, not per scrape
    assert second == [Sample((("__name__", "x"), ("a", "1"), ("instance", "a:1")), 5.0),
                      Sample((("__name__", "y"), ("instance", "a:1")), 6.0)]
    assert [s.labels for s in first] == [s.labels for s in second]
    reader.samples(b"z 1\n", 0)
    assert set(reader._series) == {"z"}  # what a target no longer sends is not kept


def test_sample_limit_is_kept_by_the_fast_path_too() -> None:
    body = b"# TYPE many gauge\n" + b"".join(b'many{i="%d"} 1\n' % i for i in range(100))
    with pytest.raises(PageError) as err:
        PageReader().samples(body, 50)
    assert err.value.kind == "sample_limit" and "more than 50 samples" in str(err.value)


@pytest.mark.parametrize("lines", [
    ['req_bucket{le="0.5"} 10 # {trace_id="abc"} 0.3 1700000000', 'req_bucket{le="0.5"} 11 # {trace_id="abc"} 0.4'],
    ['req 7 # {trace_id="abc"} 0.3', 'req 8 # {trace_id="abc"} 0.3'],
    ['req{a="x"} 1 }', 'req{a="x"} 2 }'],
], ids=["exemplar", "exemplar-no-labels", "stray-brace"])
def test_text_after_the_labels_with_a_brace_is_read_as_the_reference_reads_it(lines: list[str]) -> None:
    """A sample followed by an exemplar (`# {trace_id="…"} 0.3`): the series part ends at the
    labels' brace, not the last one on the line. The fast path took the exemplar's value (0.3)
    as the bucket's count (10), fresh and, for the same exemplar, from what it kept."""
    reader = PageReader()
    for line in lines:
        body = f"{line}\n".encode()
        assert outcome(reader.samples, body, 0) == outcome(reference_samples, body, 0), body


def test_a_kept_series_holds_its_relabelled_set_not_its_parsed_labels() -> None:
    """Each kept series drops its parsed label dict once its label set is made (≈ 0.4 KB per series of a
    fleet); its metric name is one interned string for all series of that name."""
    reader = PageReader(lambda labels: labels_of([*labels, ("instance", "a:1")]))
    reader.samples(fleet_page(30.0, "m1"), 0)
    reader.samples(fleet_page(45.0, "m1"), 0)
    kept = list(reader._series.values())
    assert len(kept) == 11 and all(series.labels is None for series in kept)
    buckets = [s for s in kept if s.name == "request_latency_seconds_bucket"]
    assert len(buckets) == 5 and len({id(s.name) for s in buckets}) == 1


def test_a_series_whose_family_renames_it_later_reads_its_labels_again() -> None:
    """The sample name a series part gets depends on its family (a counter's `_total`): when that
    changes between pages, the dropped labels are read again from the line, as the reference reads them."""
    rng = random.Random(11)
    pages = [b'# TYPE req counter\nreq{a="1",b="x y"} 3\nreq 1\n', b'req{a="1",b="x y"} 4\nreq 2\n',
             b'# TYPE req gauge\nreq{a="1",b="x y"} 5\nreq 3\n', b'# TYPE req counter\nreq{a="1",b="x y"} 6\nreq 4\n']
    reader = PageReader(lambda labels: labels_of([*labels, ("instance", "a:1")]))
    for _ in range(20):
        body = rng.choice(pages)
        expected = [(labels_of([*s.labels, ("instance", "a:1")]), s.value) for s in reference_samples(body, 0)]
        assert [(s.labels, s.value) for s in reader.samples(body, 0)] == expected, body


def test_comment_lines_are_kept_once_for_all_readers_and_bounded() -> None:
    from watchdog.sources import exposition

    exposition._COMMENTS.clear()  # what other tests' pages left
    readers = [PageReader() for _ in range(50)]
    for i, reader in enumerate(readers):
        reader.samples(fleet_page(30.0, f"m{i}"), 0)
    assert set(exposition._COMMENTS) == {"# TYPE requests_total counter", "# TYPE request_latency_seconds histogram"}
    assert not any(hasattr(reader, "_comments") for reader in readers)  # no copy per target
    reader = PageReader()
    for i in range(2 * exposition._COMMENTS_KEPT + 10):  # a target making up new HELP lines: bounded
        body = f"# HELP x{i} help {i}\n# HELP y {'z' * 1000}\nx{i} 1\n".encode()
        if i % 97 == 0:
            assert outcome(reader.samples, body, 0) == outcome(reference_samples, body, 0)
        else:
            reader.samples(body, 0)
        assert len(exposition._COMMENTS) <= exposition._COMMENTS_KEPT
    assert not any(len(line) > exposition._COMMENT_KEPT_LENGTH for line in exposition._COMMENTS)
