"""The scrape source and explicit sample timestamps (Prometheus' honor_timestamps): a frozen
exporter's old samples are no data, a repeated timestamp is not a new sample, a timestamp far in
the future is hostile, OpenMetrics writes seconds where the text format writes milliseconds."""

from __future__ import annotations

import io
import json
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.http_receiver import Receiver, Reply
from watchdog.cli import main
from watchdog.promql.ast import Matcher
from watchdog.samples import NAME
from watchdog.sources.scrape import FUTURE, PartialScrapeError, ScrapeOptions, ScrapeSource

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
TEXT = {"Content-Type": "text/plain; version=0.0.4"}
OPENMETRICS = {"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"}


class Target:
    """One receiver whose page the test sets between scrapes."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        self.body, self.headers = "", TEXT
        receiver.default = lambda _request: Reply(200, self.body, self.headers)

    def serve(self, body: str, headers: dict[str, str] = TEXT) -> None:
        self.body, self.headers = body, headers


@pytest.fixture
def target() -> Iterator[Target]:
    with Receiver() as receiver:
        yield Target(receiver)


def source_for(target: Target, **options: object) -> ScrapeSource:
    return ScrapeSource("models", ScrapeOptions(url=target.receiver.url("/metrics"), **options))  # type: ignore[arg-type]


def values(source: ScrapeSource, query: str, now: float) -> list[float]:
    return [s.value for s in source.query(query, now).samples]


def points(source: ScrapeSource, name: str, now: float) -> list[tuple[float, float]]:
    [(_, found)] = source.store.window([Matcher(NAME, "=", name)], now - 300, now)
    return found


def ms(t: float) -> str:
    return str(int(t * 1000))


def test_a_frozen_exporter_s_old_timestamped_sample_is_no_data_with_the_reason(target: Target) -> None:
    target.serve(f"model_accuracy 0.97 {ms(T0)}\n")
    source = source_for(target)

    assert source.begin_tick(T0 + 10) is None
    assert values(source, "model_accuracy", T0 + 10) == [0.97]
    for now in (T0 + 100, T0 + 200, T0 + 300, T0 + 400):  # the exporter keeps serving the same sample
        assert source.begin_tick(now) is None

    result = source.query("model_accuracy < 0.99", T0 + 400)
    assert result.samples == []  # no data, not a breach
    assert "stale: last sample timestamp 2023-11-14T22:13:20Z, 400 s old" in result.note
    [(_, batched)] = list(source.query_many(["model_accuracy"], T0 + 400))
    assert "stale: last sample timestamp 2023-11-14T22:13:20Z, 400 s old" in batched.note  # type: ignore[union-attr]
    source.close()


def test_a_range_older_than_the_sample_is_no_data_too(target: Target) -> None:
    target.serve(f"requests_total 7 {ms(T0)}\n")
    source = source_for(target)
    source.begin_tick(T0 + 5)
    source.begin_tick(T0 + 90)

    result = source.query("increase(requests_total[1m])", T0 + 90)

    assert result.samples == []
    assert "stale: last sample timestamp 2023-11-14T22:13:20Z, 90 s old" in result.note
    assert "60 s window" in result.note
    source.close()


def test_a_repeated_timestamp_and_value_is_not_a_new_sample(target: Target) -> None:
    target.serve(f"requests_total 10 {ms(T0)}\n")
    source = source_for(target)
    for step in range(1, 5):
        source.begin_tick(T0 + 15 * step)

    assert values(source, "count_over_time(requests_total[5m])", T0 + 60) == [1.0]
    rate = source.query("rate(requests_total[2m])", T0 + 60)
    assert rate.samples == []  # one point: no rate, not a rate of 0
    assert "one sample in the query's 120 s window: the target's own timestamp 2023-11-14T22:13:20Z (60 s old)" \
        in rate.note

    target.serve(f"requests_total 40 {ms(T0 + 60)}\n")  # a real new sample
    source.begin_tick(T0 + 75)
    assert values(source, "count_over_time(requests_total[5m])", T0 + 75) == [2.0]
    [increase] = values(source, "increase(requests_total[2m])", T0 + 75)
    assert increase >= 30.0
    source.close()


def test_samples_are_stored_at_their_own_time_not_the_scrape_s(target: Target) -> None:
    target.serve(f"queue_depth 3 {ms(T0 - 20)}\nqueue_depth_plain 4\n")
    source = source_for(target)
    source.begin_tick(T0)

    assert points(source, "queue_depth", T0) == [(T0 - 20, 3.0)]
    assert points(source, "queue_depth_plain", T0) == [(T0, 4.0)]  # no timestamp: the scrape's time, as before
    source.close()


def test_a_timestamp_far_in_the_future_is_dropped_counted_and_its_labels_escaped(target: Target) -> None:
    evil = 'a\\"b\\nc'  # as the page writes the value a"b<newline>c
    target.serve(f'model_accuracy{{model="{evil}"}} 0.1 {ms(T0 + 3600)}\n'
                 f'model_accuracy{{model="ok"}} 0.9 {ms(T0 + 30)}\n'  # within the tolerance: kept
                 "model_latency_seconds 0.2\n")
    source = source_for(target)

    error = source.begin_tick(T0)

    assert isinstance(error, PartialScrapeError) and error.kind == FUTURE
    assert "1 samples dropped" in str(error) and "3600 s ahead" in str(error)
    assert 'model_accuracy{model="a\\"b\\nc"}' in str(error)  # escaped as a label value: one line
    assert "\n" not in str(error)
    assert values(source, 'model_accuracy{model="a\\"b\\nc"}', T0 + 3600) == []  # never stored
    assert values(source, 'model_accuracy{model="ok"}', T0 + 30) == [0.9]
    assert values(source, "model_latency_seconds", T0) == [0.2]
    assert source.health().up  # the target answered: the rest of its page is data


@pytest.mark.parametrize("stamp", ["NaN", "+Inf", "1e400"])
def test_a_timestamp_that_is_not_a_time_is_hostile_not_a_crash(target: Target, stamp: str) -> None:
    target.serve(f"x 1 {stamp}\ny 2\n")
    source = source_for(target)

    error = source.begin_tick(T0)

    assert isinstance(error, PartialScrapeError) and error.kind == FUTURE
    assert "x: " in str(error) and "not a time" in str(error)
    assert values(source, "x", T0) == [] and values(source, "y", T0) == [2.0]


def test_openmetrics_timestamps_are_seconds_and_text_format_ones_milliseconds(target: Target) -> None:
    source = source_for(target)
    target.serve(f"x 1 {T0 - 5:.3f}\n# EOF\n", OPENMETRICS)
    assert source.begin_tick(T0) is None
    target.serve(f"x 2 {ms(T0 + 5)}\n", TEXT)
    assert source.begin_tick(T0 + 10) is None

    assert points(source, "x", T0 + 10) == [(T0 - 5, 1.0), (T0 + 5, 2.0)]

    target.serve(f"x 3 {ms(T0 + 20)}\n# EOF\n", OPENMETRICS)  # milliseconds where seconds belong: far ahead
    error = source.begin_tick(T0 + 20)
    assert error is not None and error.kind == FUTURE
    source.close()


def test_honor_timestamps_false_stores_every_sample_at_the_scrape_s_time(target: Target) -> None:
    target.serve(f"model_accuracy 0.97 {ms(T0)}\nx 1 {ms(T0 + 3600)}\n")
    source = source_for(target, honor_timestamps=False)

    for now in (T0 + 10, T0 + 100):
        assert source.begin_tick(now) is None
    assert values(source, "count_over_time(model_accuracy[5m])", T0 + 100) == [2.0]  # one a scrape

    assert source.begin_tick(T0 + 400) is None
    assert values(source, "model_accuracy", T0 + 400) == [0.97]
    assert values(source, "x", T0 + 400) == [1.0]
    source.close()


def test_a_page_that_stops_stamping_is_read_as_before(target: Target) -> None:
    target.serve(f"x 1 {ms(T0)}\n")
    source = source_for(target)
    source.begin_tick(T0 + 400)
    assert "stale:" in source.query("x", T0 + 400).note

    target.serve("x 2\n")
    source.begin_tick(T0 + 415)

    result = source.query("x", T0 + 415)
    assert [s.value for s in result.samples] == [2.0] and "stale" not in result.note
    source.close()


def test_check_gives_the_stale_reason_for_a_frozen_exporter(target: Target, tmp_path: Path) -> None:
    frozen = time.time() - 3600  # `check` reads the real clock
    target.serve(f"model_accuracy 0.5 {ms(frozen)}\nmodel_info{{version=\"v1\"}} 1\n")
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: fraud-model
        rules:
          - {name: accuracy, source: model, query: model_accuracy, below: 0.9, action: alert, severity: warning}
        """))
    config = tmp_path / "watchdog.yaml"
    config.write_text(textwrap.dedent(f"""\
        interval: 1s
        state: state.db
        rule_files: [rules.yaml]
        sources:
          model: {{type: scrape, url: "{target.receiver.url('/metrics')}"}}
        alerters:
          log: {{type: log}}
        targets:
          fraud-model:
            version: {{source: model, query: model_info, label: version}}
            alert: [log]
        """))
    out, err = io.StringIO(), io.StringIO()

    main(["check", "--json", "--gap", "0", "-c", str(config)], out, err)

    [row] = json.loads(out.getvalue())
    assert row["verdict"] == "no_data", row  # an accuracy of 0.5 an hour old is not a breach
    assert "stale: last sample timestamp " in row["reason"] and "s old" in row["reason"], row


def test_a_hostile_metric_name_is_escaped_in_the_message_too(target: Target) -> None:
    target.serve(f'{{"evil\\nname"}} 1 {ms(T0 + 7200)}\n')
    source = source_for(target)

    error = source.begin_tick(T0)

    assert error is not None and error.kind == FUTURE
    assert "evil\\nname" in str(error) and "\n" not in str(error)
    source.close()


def test_an_empty_answer_looks_only_at_the_stamped_series_of_its_metric(target: Target,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Why an empty answer is empty was looked for in every stamped series of every target, and
    those older than the window matched label by label: a /federate page (every sample stamped)
    of 20,000 series cost each empty query (an error rate while nothing fails) 20,000 looks on
    every tick, and as many matches once they aged. Only the selectors' metric names' are."""
    from watchdog.sources import scrape

    page = "".join(f'federated_metric{{i="{i}"}} {i} {ms(T0)}\n' for i in range(2000))
    target.serve(page + f"frozen 1 {ms(T0)}\n")
    source = source_for(target)
    assert source.begin_tick(T0 + 5) is None
    matched = []
    real = scrape._matches
    monkeypatch.setattr(scrape, "_matches", lambda matchers, labels: matched.append(labels) or real(matchers, labels))

    assert source.query('rate(errors_total{code="500"}[1m])', T0 + 5).samples == []
    assert matched == []
    result = source.query("frozen", T0 + 400)  # the reason is still given
    assert result.samples == [] and "stale: last sample timestamp" in result.note
    assert len(matched) == 1
    source.close()
