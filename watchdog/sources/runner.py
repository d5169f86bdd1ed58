"""Run the sources of one tick: concurrently, once per query, with timeouts, retries and a breaker.

The engine calls, once per tick:

    errors = runner.begin_tick(now, names)             # refresh every used source, concurrently
    runner.prefetch([(source, query, params), …], now, deadline)   # all rule queries at once
    result = runner.query(source, query, now, params)  # QueryResult, or the SourceError/QueryError

- identical (source, query, params) run once per tick; `query` answers from that cache (and
  runs a query that was not prefetched, with the same protections);
- each source gets its own threads, at most `min(settings.max_concurrency,
  source.max_concurrency)` at once (a source without a `max_concurrency` attribute gets 1, as
  the Source interface promises); a call still running after `settings.query_timeout` or the
  tick's deadline is abandoned (reported as a timeout), so a slow source never delays another;
- transient failures (timeouts, lost connections, 5xx) are retried with exponential backoff
  and jitter (`watchdog.retrying`), `options.retries` times when the source has that option,
  never starting an attempt after the call's deadline;
- an in-process source (one with `query_many(queries, now)`, e.g. `scrape`, whose queries
  are evaluated over samples it holds) gets a tick's requests in ONE call: no thread, retry
  and bookkeeping per query, and queries of one template are evaluated as one;
- a per-source circuit breaker: after `failure_threshold` consecutive failures the source is
  skipped for `cooldown` seconds (calls fail at once with SourceError kind `circuit_open`);
  then one call probes it (half-open): success closes the circuit, failure opens it again.

Deadlines are instants of the injected clock's `monotonic()` (the engine's tick budget is
measured on it), the breaker's cool-down is measured with its `now()`; so tests drive both
with `FakeClock`, whose monotonic time also passes while real calls run.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Iterable, Sequence, Union

from watchdog.clock import Clock, StepBack, SystemClock, real_deadline
from watchdog.errors import QueryError, SourceError
from watchdog.metrics import DaemonMetrics
from watchdog.retrying import Interrupted, call_with_retries
from watchdog.sources.base import QueryResult, Source, SourceHealth, detached

log = logging.getLogger(__name__)

Params = Union[dict[str, str], None]
Request = tuple[str, str, Params]  # (source name, query, params)
Answer = Union[QueryResult, SourceError, QueryError]
_Key = tuple[str, str, float, tuple[tuple[str, str], ...]]

#: SourceError kinds worth another attempt within the same tick
TRANSIENT_KINDS = frozenset({"timeout", "connection", "http", "http_5xx", "unavailable", "internal", "canceled",
                             "locked"})


@dataclass(frozen=True)
class RunnerSettings:
    max_concurrency: int = 4  # upper bound of calls in flight per source
    query_timeout: float = 30.0  # longest wait for one call (begin_tick or query), retries included
    failure_threshold: int = 5  # consecutive failures that open a source's circuit
    cooldown: float = 60.0  # seconds a circuit stays open before one probe call
    retries: int = 0  # for sources without a `retries` option
    backoff: float = 0.5  # first pause between attempts, for sources without a `backoff` option
    max_wait: float = 5.0  # longest pause between two attempts


class Circuit:
    """closed → (threshold failures) → open → (cool-down) → half_open → probe → closed | open."""

    def __init__(self, threshold: int, cooldown: float):
        self.threshold, self.cooldown = threshold, cooldown
        self.state = "closed"
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.last_error = ""

    def blocked(self, now: float) -> bool:
        """True while open and cooling down; turns half-open once the cool-down has passed."""
        if self.state == "open" and self.opened_at is not None and now - self.opened_at >= self.cooldown:
            self.state, self.probing = "half_open", False
        return self.state == "open"

    def clock_stepped(self, now: float) -> None:
        """The wall clock stepped back (`StepBack`): an open circuit opened in the new clock's
        future cools down from here, not for the step's length more."""
        if self.state == "open" and self.opened_at is not None and now < self.opened_at:
            self.opened_at = now

    def allow(self, now: float) -> bool:
        """May a query run now? In half-open state only one (the probe) may."""
        if self.blocked(now):
            return False
        if self.state == "half_open":
            if self.probing:
                return False
            self.probing = True
        return True

    def success(self) -> None:
        self.state, self.failures, self.probing, self.opened_at = "closed", 0, False, None

    def failure(self, now: float, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state, self.opened_at, self.probing = "open", now, False

    def release_probe(self) -> None:
        """A probe that neither succeeded nor failed at the source (e.g. a QueryError)."""
        self.probing = False

    def refusal(self, name: str, now: float) -> SourceError:
        wait = max(0.0, (self.opened_at or now) + self.cooldown - now)
        when = f"next try in {wait:.0f}s" if self.state == "open" else "a probe is in flight"
        return SourceError(f"source {name} skipped: circuit open after {self.failures} consecutive failures "
                           f"({when}); last error: {self.last_error}", "circuit_open")


class SourceRunner:
    def __init__(self, sources: dict[str, Source], metrics: DaemonMetrics | None = None,
                 clock: Clock | None = None, settings: RunnerSettings | None = None,
                 stop: threading.Event | None = None, steps: StepBack | None = None):
        self.sources = sources
        self.metrics = metrics
        self.clock = clock or SystemClock()
        # The wall clock's steps: the engine's (observed once per tick, first), or, for a runner
        # on its own, one it observes at each `begin_tick`. Sources that keep times of their own
        # (the scrape source's samples) are handed the same one.
        self.steps = steps or StepBack()
        self._observes = steps is None
        self._step_mark = self.steps.epoch
        for source in sources.values():
            share = getattr(source, "share_steps", None)
            if callable(share):
                share(self.steps)
        self.settings = settings or RunnerSettings()
        self.stop = stop or threading.Event()
        s = self.settings
        self._circuits = {name: Circuit(s.failure_threshold, s.cooldown) for name in sources}
        self._limits = {name: self._limit(src) for name, src in sources.items()}
        # Slots outlive a tick: a call abandoned at its deadline keeps its slot until it ends.
        self._slots = {name: threading.BoundedSemaphore(limit) for name, limit in self._limits.items()}
        self._lock = threading.RLock()
        self._cache: dict[_Key, Answer] = {}
        # This tick's parameter tuples, one object per distinct value: a target's queries share
        # one params dict, and 10,000 keys each with their own copy were ≈ 1 MB.
        self._params: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        self._failed_this_tick: set[str] = set()

    def _clock_steps(self, now: float) -> None:
        """A step back of the wall clock taken since the last tick reaches every circuit."""
        if self._observes:
            self.steps.observe(now)
        stepped, self._step_mark = self.steps.taken(self._step_mark)
        if any(step < 0 for step in stepped):
            for circuit in self._circuits.values():
                circuit.clock_stepped(self.clock.now())

    def _limit(self, source: Source) -> int:
        own = getattr(source, "max_concurrency", 1)
        return max(1, min(self.settings.max_concurrency, own if isinstance(own, int) else 1))

    # -- the tick ------------------------------------------------------------------------------

    def begin_tick(self, now: float, names: Iterable[str] | None = None,
                   deadline: float | None = None) -> dict[str, SourceError | None]:
        """Start a tick: forget last tick's answers and run `begin_tick` of the sources in
        `names` (default: all) concurrently. Never raises; returns each source's failure.
        `deadline` is a `clock.monotonic()` instant (default: the query timeout from now)."""
        with self._lock:
            self._cache.clear()
            self._params.clear()
            self._failed_this_tick.clear()
            self._clock_steps(now)
        until = self._until(deadline)
        out: dict[str, SourceError | None] = {}
        run: list[str] = []
        for name in sorted(self.sources if names is None else set(names)):
            with self._lock:
                circuit = self._circuits[name]
                # skipped while open; when half-open the refresh runs and the first query probes
                refusal = circuit.refusal(name, self.clock.now()) if circuit.blocked(self.clock.now()) else None
            if refusal is None:
                run.append(name)
                continue
            out[name] = refusal
            self._count_error(name, refusal)
        results: dict[str, SourceError | None] = {}
        over = threading.Event()

        def refresh(name: str) -> None:
            error = self._begin_one(name, now, until)
            with self._lock:
                if not over.is_set():
                    results[name] = error

        self._run_threads([(f"refresh-{name}", partial(refresh, name)) for name in run], until)
        with self._lock:
            over.set()
            finished = dict(results)
        for name in run:
            if name in finished:
                out[name] = finished[name]
                self._record_begin(name, finished[name])
            else:
                out[name] = self._abandon(name, "begin_tick")
                with self._lock:
                    self._failed_this_tick.add(name)
        return out

    def _begin_one(self, name: str, now: float, until: float) -> SourceError | None:
        slot = self._slots[name]
        if not slot.acquire(timeout=max(0.0, until - self.clock.monotonic())):
            return SourceError(f"source {name} is busy with earlier calls that have not finished", "timeout")
        try:
            source = self.sources[name]
            within = getattr(source, "begin_tick_within", None)
            return within(now, real_deadline(self.clock, until)) if within is not None else source.begin_tick(now)
        except Exception as exc:  # the interface says begin_tick does not raise; a plugin may
            log.exception("source %s: begin_tick raised", name)
            return SourceError(f"source {name}: begin_tick raised {type(exc).__name__}: {exc}", "internal")
        finally:
            slot.release()

    def prefetch(self, requests: Sequence[Request], now: float, deadline: float | None = None) -> None:
        """Run every distinct request not yet answered this tick, concurrently; wait for them
        (up to the query timeout or `deadline`) so that `query` answers from the cache.

        Each source gets its own threads ("lanes"), as many as its concurrency limit, that
        take its requests in order; so a slow source never holds up another's requests."""
        until = self._until(deadline)
        queues: dict[str, deque[tuple[_Key, Params]]] = {}
        wanted: dict[_Key, None] = {}  # ordered set
        for source, query, params in requests:
            key = self._key(source, query, now, params)
            if key in self._cache or key in wanted:
                continue
            if source not in self.sources:
                self._cache[key] = SourceError(f"unknown source {source!r}", "config")
                continue
            wanted[key] = None
            queues.setdefault(source, deque()).append((key, params))
        results: dict[_Key, Answer] = {}
        over = threading.Event()
        lanes = [(f"source-{name}", partial(self._lane, name, queue, now, until, results, over))
                 for name, queue in queues.items() for _ in range(min(self._limits[name], len(queue)))]
        self._run_threads(lanes, until)
        with self._lock:
            over.set()
            finished = dict(results)
        for key in wanted:
            self._cache[key] = finished[key] if key in finished else self._abandon(key[0], f"query {key[1]!r}")

    def query(self, source: str, query: str, now: float, params: Params = None) -> Answer:
        """This tick's answer to (source, query, params) at `now`: a QueryResult or the error
        (returned, not raised). A request that was not prefetched runs now; `now` may differ
        from the tick's time (a baseline `offset` ago)."""
        key = self._key(source, query, now, params)
        if key not in self._cache:
            self.prefetch([(source, query, params)], now)
        return self._cache[key]

    def end_tick(self) -> None:
        """The tick is over: its answers are not asked for again (the next tick's `begin_tick`
        would drop them), so they are not kept between ticks (≈ 4 MB at 10,000 rules)."""
        with self._lock:
            self._cache.clear()
            self._params.clear()

    def _key(self, source: str, query: str, now: float, params: Params) -> _Key:
        values = tuple(sorted(params.items())) if params else ()
        return source, query, now, self._params.setdefault(values, values)

    # -- one call ------------------------------------------------------------------------------------

    def _lane(self, name: str, queue: deque[tuple[_Key, Params]], now: float, until: float,
              results: dict[_Key, Answer], over: threading.Event) -> None:
        many = getattr(self.sources[name], "query_many", None)
        while True:
            with self._lock:
                if over.is_set() or not queue or self.clock.monotonic() >= until:
                    return  # what is left is reported as not finished by its deadline
                if many is not None:
                    batch = list(queue)
                    queue.clear()
                else:
                    key, params = queue.popleft()
            if many is not None:
                self._call_many(name, many, batch, now, until, results, over)
                continue
            answer = self._call(name, key[1], now, params, until)
            with self._lock:
                if over.is_set():
                    return  # abandoned: counted as a timeout already; this late answer is dropped
                results[key] = answer
                self._record_query(name, answer, now)

    def _call_many(self, name: str, many: Callable[[list[str], float], Iterable[tuple[int, Answer]]],
                   batch: list[tuple[_Key, Params]], now: float, until: float, results: dict[_Key, Answer],
                   over: threading.Event) -> None:
        """All of a tick's requests to an in-process source (one with `query_many`, e.g.
        `scrape`: no I/O, so no retries) in one call, under the same breaker and slot; each
        answer is kept as it comes, so what finished before the deadline counts."""
        refusal = self._refusal(name)
        if refusal is not None:
            with self._lock:
                for key, _ in batch:
                    if not over.is_set():
                        results[key] = refusal
                        self._record_query(name, refusal, now)
            return
        started = self.clock.monotonic()
        slot = self._slots[name]
        if not slot.acquire(timeout=max(0.0, until - self.clock.monotonic())):
            busy = self._busy(name)
            with self._lock:
                for key, _ in batch:
                    if not over.is_set():
                        results[key] = busy
                self._record_query(name, busy, now)
            return
        answered: set[int] = set()
        success: Answer | None = None
        try:
            for index, answer in many([key[1] for key, _ in batch], now):
                with self._lock:
                    if over.is_set():
                        return  # abandoned at the deadline: what is left is counted as timed out
                    results[batch[index][0]] = answer
                    answered.add(index)
                    if isinstance(answer, (SourceError, QueryError)):
                        self._record_query(name, answer, now)
                    else:
                        success = answer
            if success is not None:  # the breaker and `up` once for every good answer
                with self._lock:
                    self._record_query(name, success, now)
        except Exception as exc:  # a plugin bug must not take the tick down
            log.exception("source %s: query_many raised", name)
            error = SourceError(f"source {name}: {type(exc).__name__}: {exc}", "internal")
            with self._lock:
                if not over.is_set():
                    for index, (key, _) in enumerate(batch):
                        if index not in answered:
                            results[key] = error
                    self._record_query(name, error, now)
        finally:
            slot.release()
            if self.metrics is not None:
                self.metrics.source_query_duration.labels(name).observe(self.clock.monotonic() - started)

    def _refusal(self, name: str) -> SourceError | None:
        """The open circuit's refusal of a call to `name` now; None: the call may go."""
        with self._lock:
            circuit = self._circuits[name]
            return None if circuit.allow(self.clock.now()) else circuit.refusal(name, self.clock.now())

    def _busy(self, name: str) -> SourceError:
        return SourceError(f"source {name} is busy: earlier calls have not finished within "
                           f"{self.settings.query_timeout:g}s", "timeout")

    def _call(self, name: str, query: str, now: float, params: Params, until: float) -> Answer:
        refusal = self._refusal(name)
        if refusal is not None:
            return refusal
        started = self.clock.monotonic()
        try:
            return self._attempts(name, self.sources[name], query, now, params, until)
        finally:
            if self.metrics is not None:
                self.metrics.source_query_duration.labels(name).observe(self.clock.monotonic() - started)

    def _attempts(self, name: str, source: Source, query: str, now: float, params: Params,
                  until: float) -> Answer:
        slot = self._slots[name]
        if not slot.acquire(timeout=max(0.0, until - self.clock.monotonic())):
            return self._busy(name)
        options = getattr(source, "options", None)
        retries = getattr(options, "retries", self.settings.retries)
        backoff = getattr(options, "backoff", self.settings.backoff)
        try:
            return call_with_retries(
                lambda: invoke(source, query, now, params), attempts=int(retries) + 1,
                initial_wait=float(backoff), max_wait=self.settings.max_wait, stop=self.stop,
                retry_on=_transient, describe=f"source {name}", deadline=real_deadline(self.clock, until))
        except (SourceError, QueryError) as exc:
            return detached(exc)  # kept in this tick's cache: without the frames of the failed call
        except Interrupted as exc:
            return SourceError(str(exc), "interrupted")
        except Exception as exc:  # a plugin bug must not take the tick down
            log.exception("source %s: query raised", name)
            return SourceError(f"source {name}: {type(exc).__name__}: {exc}", "internal")
        finally:
            slot.release()

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _until(self, deadline: float | None) -> float:
        until = self.clock.monotonic() + self.settings.query_timeout
        return until if deadline is None else min(until, deadline)

    def _run_threads(self, jobs: list[tuple[str, Callable[[], None]]], until: float) -> None:
        """Run each job on its own daemon thread; wait for them until `until`, not longer, and
        not at all once `stop` is set (shutdown: what has not finished is abandoned)."""
        threads = [threading.Thread(target=job, name=name, daemon=True) for name, job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive() and not self.stop.is_set():
                left = until + 0.05 - self.clock.monotonic()
                if left <= 0:
                    break
                thread.join(min(left, 0.1))

    def _abandon(self, name: str, what: str) -> SourceError:
        """A call not finished at its deadline: abandoned (a thread cannot be killed); its
        slot stays taken until it ends, and its eventual answer is dropped."""
        error = SourceError(f"source {name}: {what} did not finish within the "
                            f"{self.settings.query_timeout:g}s query timeout or the tick's deadline", "timeout")
        self._record_failure(name, error)
        return error

    def _record_begin(self, name: str, error: SourceError | None) -> None:
        if error is None:
            return  # up and last success are set by the queries that follow
        with self._lock:
            if not getattr(error, "partial", False):  # e.g. only one of several scrape targets down
                self._failed_this_tick.add(name)
                self._circuits[name].failure(self.clock.now(), str(error))
        self._count_error(name, error)

    def _record_query(self, name: str, answer: Answer, now: float) -> None:
        if isinstance(answer, SourceError):
            if answer.kind == "circuit_open":
                self._count_error(name, answer)
            else:
                self._record_failure(name, answer)
            return
        with self._lock:
            # A QueryError is an answer too: the source works, the query is at fault. A query
            # answered from data kept from before a failed refresh (scrape) proves nothing.
            failed = name in self._failed_this_tick
            if failed:
                self._circuits[name].release_probe()
            else:
                self._circuits[name].success()
        if isinstance(answer, QueryError):
            self._count_error(name, answer)
        elif not failed:
            self._set_up(name, now)

    def _record_failure(self, name: str, error: SourceError) -> None:
        with self._lock:
            self._circuits[name].failure(self.clock.now(), str(error))
        self._count_error(name, error)

    def _count_error(self, name: str, error: Exception) -> None:
        if self.metrics is None:
            return
        kind = error.kind if isinstance(error, SourceError) else "query"
        self.metrics.source_errors.labels(name, kind).inc()
        if isinstance(error, SourceError):
            self.metrics.source_up.labels(name).set(0)

    def _set_up(self, name: str, now: float) -> None:
        if self.metrics is not None:
            self.metrics.source_up.labels(name).set(1)
            self.metrics.source_last_success.labels(name).set(now)

    # -- status ----------------------------------------------------------------------------------

    def health(self) -> dict[str, SourceHealth]:
        out = {}
        for name, source in self.sources.items():
            try:
                health = source.health()
            except Exception as exc:  # health is for display; a plugin bug must not break /status
                health = SourceHealth(up=False, last_error=f"health() raised {type(exc).__name__}: {exc}")
            with self._lock:
                circuit = self._circuits[name]
                details = {**health.details, "circuit": circuit.state, "consecutive_failures": circuit.failures}
                up = health.up and circuit.state == "closed" and name not in self._failed_this_tick
                last_error = health.last_error or (circuit.last_error if circuit.state != "closed" else "")
            out[name] = replace(health, up=up, last_error=last_error, details=details)
        return out

    def circuit(self, name: str) -> str:
        with self._lock:
            return self._circuits[name].state

    def close(self) -> None:
        """Cut retries short (calls in flight finish on their own); the sources stay open."""
        self.stop.set()


def invoke(source: Source, query: str, now: float, params: Params = None) -> QueryResult:
    """Ask one source, passing bound parameters (e.g. `:version`) to sources that take them."""
    query_with: Callable[[str, float, Params], QueryResult] | None = getattr(source, "query_with", None)
    if params and query_with is not None:
        return query_with(query, now, params)
    return source.query(query, now)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, SourceError) and exc.kind in TRANSIENT_KINDS
