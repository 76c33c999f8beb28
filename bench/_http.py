"""Section 11: ``ckl serve`` — a yield over HTTP against one in-process, and SSE subscribers.

Per backend, one real ``ckl serve`` subprocess (uvicorn, ``--port 0`` on loopback) on a store
of its own, and two measurements:

- **A yield over HTTP** against ``ledger.checkpoint_yield`` in this process, on another store
  of the same kind (a SQLite file beside the server's, so neither connection's page cache is
  invalidated by the other's writes; a PostgreSQL database of its own on the same server):
  interleaved rounds (``bench/_harness.py``) of four variants, each on its own checkpoint —
  the in-process yield (the baseline), ``POST …/yield`` through an ``httpx.Client`` and
  through a ``http.client.HTTPConnection`` (both keep-alive, the reply's JSON parsed), and
  ``GET /v1/health`` through ``http.client`` (the HTTP floor: uvicorn, FastAPI and the client
  with no ledger call). Every operation's own wall time is kept too, for p50 and p99. Then
  yields and health requests timed alone, one after the other, for the server's CPU per
  request (``/proc/PID/stat``: every thread of the server, its stream hub included).
- **SSE subscribers**: ``COUNT`` streams of one run (``GET /v1/runs/RUN/stream``, from the
  run's start) read by one or two subscriber processes with raw sockets, while ``WRITERS``
  separate processes write yields straight to the store at a fixed rate each
  (``bench/_http_clients.py``). Delivery lag: the moment the subscriber's ``recv`` returned
  the frame minus the moment the writer's append committed (``CLOCK_MONOTONIC``, one clock for
  every process). Every stream's positions are checked against the store's log of the run:
  no gap, no duplicate, in order. Memory per subscriber: the server's RSS with the streams
  attached minus its RSS with one stream attached (opened first: the hub reads no events
  while none is), divided by their number.

``BENCH_HTTP_PYSPY=DIR`` (this benchmark's own variable) records the server with ``py-spy``
during the interleaved rounds into ``DIR/http-BACKEND.txt`` (collapsed stacks, all threads,
idle frames dropped), when ``py-spy`` is installed.
"""

# ruff: noqa: RUF001  (the report's typography: multiplication sign, en dash)

from __future__ import annotations

import collections
import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench._harness import Comparison, Variant, log, measure, run_interleaved
from bench._http_clients import ClientProcess
from bench._markdown import micros, table, text, times, times_spread, verdict
from bench._workload import Feed, open_ledger, yield_payload
from ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bench._harness import Op

__all__ = [
    "FULL",
    "QUICK",
    "STORES",
    "HttpProfile",
    "HttpResults",
    "measure_backend",
    "section",
    "summary_rows",
]

ROOT = Path(__file__).resolve().parents[1]
YIELD_RUN = "bench-http-yield"
STREAM_RUN = "bench-http-stream"
STORES = ("served", "inproc")
"""The stores of one backend: the server's and the in-process baseline's."""
YIELD_GOAL = 1.5
LAG_GOAL_MS = 50.0
"""p99 delivery lag on PostgreSQL."""
START_TIMEOUT = 60.0
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class HttpProfile:
    """Sizes of both measurements."""

    name: str
    rounds: int
    batch: int
    """Operations per variant per round."""
    warmup: int
    alone: int
    """Requests timed alone (yields, then health checks) for the server's CPU per request."""
    subscribers: int
    client_processes: int
    writers: int
    rate: float
    """Yields per second of each writer."""
    seconds: float
    """How long the writers write."""


QUICK = HttpProfile(
    "quick",
    rounds=3,
    batch=10,
    warmup=5,
    alone=20,
    subscribers=10,
    client_processes=1,
    writers=2,
    rate=20.0,
    seconds=1.0,
)
FULL = HttpProfile(
    "full",
    rounds=15,
    batch=100,
    warmup=30,
    alone=500,
    subscribers=100,
    client_processes=1,
    writers=8,
    rate=20.0,
    seconds=20.0,
)


@dataclass
class YieldResult:
    """The interleaved rounds, every operation's wall time, the server's CPU per request."""

    comparison: Comparison
    samples: dict[str, list[float]]
    server_cpu_us: dict[str, float]


@dataclass
class StreamResult:
    """What the subscribers saw while the writers wrote."""

    subscribers: int
    client_processes: int
    writers: int
    rate: float
    seconds: float
    commits: int
    lags_ms: list[float]
    gaps: int
    duplicates: int
    out_of_order: int
    unexpected: int
    reconnects: int
    rss_before_kib: int
    rss_attached_kib: int
    rss_after_kib: int
    server_cpu: float
    """The server's CPU seconds per wall second while the writers wrote."""
    client_cpu: list[float]
    """Each subscriber process's CPU seconds per wall second, likewise."""
    poll: float | None
    holders: _Holders | None = None
    """PostgreSQL: the transactions that held the visible horizon back while the writers wrote."""


@dataclass
class _Holders:
    """Samples of the oldest transaction holding an xid (hence the visible horizon)."""

    ages_ms: list[float] = field(default_factory=list)
    """Its age at each sample that found one (none found: nothing held the horizon)."""
    samples: int = 0
    by_statement: collections.Counter[str] = field(default_factory=collections.Counter)
    """What it was running, for the samples where it was older than 10 ms."""


class _HorizonSampler:
    """On PostgreSQL, samples ``pg_stat_activity`` every 20 ms in a thread of this process."""

    QUERY = (
        "SELECT extract(epoch FROM clock_timestamp() - xact_start) * 1000, left(query, 60)"
        " FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        " ORDER BY xact_start LIMIT 1"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.found = _Holders()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="horizon-sampler", daemon=True)

    def __enter__(self) -> _Holders:
        self._thread.start()
        return self.found

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415  (PostgreSQL only)

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                row = conn.execute(self.QUERY).fetchone()
                self.found.samples += 1
                if row is not None:
                    age, statement = float(row[0]), str(row[1])
                    self.found.ages_ms.append(age)
                    if age > 10:
                        self.found.by_statement[statement.split("(", maxsplit=1)[0].strip()] += 1


@dataclass
class HttpResults:
    """Per backend: the yield comparison and the stream run."""

    profile: HttpProfile
    yields: dict[str, YieldResult] = field(default_factory=dict)
    streams: dict[str, StreamResult] = field(default_factory=dict)


def _env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env.update(PYTHONPATH=str(ROOT), CKL_STORE=store)
    return env


class _Served:
    """One ``ckl serve`` subprocess on loopback; its stderr kept for error messages."""

    def __init__(self, store: str, poll: float | None, max_streams: int) -> None:
        argv = [sys.executable, "-m", "ckl", "serve", "--port", "0"]
        argv += ["--max-streams", str(max_streams)]
        if poll is not None:
            argv += ["--poll-interval", str(poll)]
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_env(store),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self.host, self.port = "", 0
        found = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line.rstrip())
                if "listening on http://" in line and not found.is_set():
                    address = line.split("http://", 1)[1].strip().rstrip("/")
                    host, _, port = address.rpartition(":")
                    self.host, self.port = host, int(port)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not found.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ckl serve did not start:\n" + "\n".join(self.lines))

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://{self.host}:{self.port}"

    def rss_kib(self) -> int:
        """Its resident memory now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        """CPU time of all its threads so far (user + system)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _sampled(samples: list[float], action: Callable[[], object]) -> Op:
    """An operation timed whole, its wall time also kept in ``samples``."""

    def op() -> tuple[float, float]:
        wall, cpu = measure(action)
        samples.append(wall)
        return wall, cpu

    return op


def _checked(status: int, body: bytes) -> object:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:500]!r}")
    return json.loads(body)


class _HttpFeed:
    """Successive yields of one checkpoint over HTTP, by ``httpx`` or ``http.client``."""

    def __init__(self, served: _Served, batch_index: int) -> None:
        self.path = f"/v1/runs/{YIELD_RUN}/checkpoints/{batch_index}"
        self.step = 0
        self.httpx = httpx.Client(base_url=served.url, timeout=30.0)
        self.conn = http.client.HTTPConnection(served.host, served.port, timeout=30.0)
        _checked(*self._post_raw(self.path, b"{}"))

    def _body(self) -> bytes:
        self.step += 1
        cursor, items, results = yield_payload(self.step)
        payload = {"cursor": cursor, "items_processed": items, "accumulated_results": results}
        return json.dumps(payload).encode()

    def _post_raw(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self._request("POST", path, body, {"Content-Type": "application/json"})

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One request on the kept-alive connection, opened again once if the server closed it.

        uvicorn closes a connection idle for 5 s; a repeated yield is a no-op anyway.
        """
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body, headers or {})
                reply = self.conn.getresponse()
                return reply.status, reply.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def by_http_client(self) -> None:
        """One yield through ``http.client``."""
        _checked(*self._post_raw(self.path + "/yield", self._body()))

    def by_httpx(self) -> None:
        """One yield through ``httpx``."""
        reply = self.httpx.post(
            self.path + "/yield", content=self._body(), headers={"Content-Type": "application/json"}
        )
        _checked(reply.status_code, reply.content)

    def health(self) -> None:
        """``GET /v1/health`` through ``http.client``."""
        _checked(*self._request("GET", "/v1/health"))

    def reconnect(self) -> None:
        """Open both connections again (after a pause longer than the server's keep-alive)."""
        self.conn.close()
        self._request("GET", "/v1/health")
        self.httpx.get("/v1/health")

    def close(self) -> None:
        """Close both connections."""
        self.httpx.close()
        self.conn.close()


@contextlib.contextmanager
def _pyspy(served: _Served, backend: str) -> Iterator[None]:
    """py-spy on the server while the block runs, if ``BENCH_HTTP_PYSPY`` names a folder."""
    folder = os.environ.get("BENCH_HTTP_PYSPY")
    tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not folder or not Path(tool).exists():
        yield None
        return
    out = Path(folder) / f"http-{backend.lower()}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [tool, "record", "--pid", str(served.pid), "--rate", "250", "--format", "raw"]
    spy = subprocess.Popen([*argv, "--threads", "--output", str(out)], stdout=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield None
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        log(f"http: py-spy profile of the server in {out}")


def _measure_yields(
    profile: HttpProfile, served: _Served, stores: dict[str, str], backend: str
) -> YieldResult:
    names = ("inproc", "httpx", "http.client", "health")
    samples: dict[str, list[float]] = {name: [] for name in names}
    with open_ledger(stores["inproc"]) as ledger:
        feed = Feed(ledger.create_checkpoint(YIELD_RUN, 0))
        remote_x, remote_c = _HttpFeed(served, 1), _HttpFeed(served, 2)
        try:
            actions: dict[str, Callable[[], object]] = {
                "inproc": lambda: feed.yield_on(ledger),
                "httpx": remote_x.by_httpx,
                "http.client": remote_c.by_http_client,
                "health": remote_c.health,
            }
            for _ in range(profile.warmup):
                for action in actions.values():
                    action()
            variants = [
                Variant(name, _sampled(samples[name], actions[name]), profile.batch)
                for name in names
            ]
            with _pyspy(served, backend):
                comparison = run_interleaved(
                    f"http: {backend} yield over HTTP",
                    variants,
                    rounds=profile.rounds,
                    warmup=0,
                )
            server_cpu = {}
            for name in ("httpx", "http.client", "health"):
                remote_x.reconnect()
                remote_c.reconnect()
                before = served.cpu_seconds()
                for _ in range(profile.alone):
                    actions[name]()
                server_cpu[name] = (served.cpu_seconds() - before) / profile.alone * 1e6
        finally:
            remote_x.close()
            remote_c.close()
    return YieldResult(comparison, samples, server_cpu)


def _run_positions(store: str, run_id: str) -> list[int]:
    """The run's events' positions in the store's log, in order."""
    with Ledger.open(store) as ledger:
        positions = []
        for position, event in ledger.iter_log():
            token = ledger.token_for(event.originator_id)
            if token is not None and token.run_id == run_id:
                positions.append(position)
        return positions


def _check_stream(
    positions: list[int], expected: list[int], upto: int
) -> tuple[int, int, int, int]:
    """Gaps, duplicates, out-of-order and unexpected positions of one stream."""
    want = {p for p in expected if p <= upto}
    got = [p for p in positions if p <= upto]
    unique = set(got)
    out_of_order = sum(1 for a, b in itertools.pairwise(got) if b <= a)
    return len(want - unique), len(got) - len(unique), out_of_order, len(unique - want)


def _start_writers(profile: HttpProfile, store: str) -> list[ClientProcess]:
    """The writer processes (started early: they import the ledger while the server starts)."""
    return [
        ClientProcess(
            "writer",
            store,
            STREAM_RUN,
            str(i),
            str(profile.rate),
            str(i / profile.writers),
            env=_env(store),
        )
        for i in range(profile.writers)
    ]


def _measure_streams(
    profile: HttpProfile,
    served: _Served,
    *,
    store: str,
    poll: float | None,
    writers: list[ClientProcess],
    target: int,
) -> StreamResult:
    """``writers`` said ready; ``target``: the last position of their untimed yields."""
    env = _env(store)
    subscribers: list[ClientProcess] = []

    def subscriber(count: int) -> ClientProcess:
        argv = ("subscribe", served.host, str(served.port), STREAM_RUN, str(count), str(target))
        return ClientProcess(*argv, env=env)

    try:
        # One stream first, so that the baseline holds what the hub sets up for its first
        # client (with none attached it reads no events): the rest is per subscriber.
        subscribers.append(subscriber(1))
        subscribers[0].ready()
        time.sleep(0.5)
        rss_before = served.rss_kib()
        shares = [
            profile.subscribers // profile.client_processes
            + (1 if i < profile.subscribers % profile.client_processes else 0)
            for i in range(profile.client_processes)
        ]
        subscribers += [subscriber(n) for n in shares]
        for sub in subscribers[1:]:
            sub.ready()
        time.sleep(0.5)
        rss_attached = served.rss_kib()
        start = time.monotonic_ns() + 200_000_000
        end = start + int(profile.seconds * 1e9)
        cpu_before = served.cpu_seconds()
        sampler = _HorizonSampler(store) if poll is None else contextlib.nullcontext()
        commits: list[tuple[int, int]] = []
        with sampler as holders:
            for writer in writers:
                writer.send("run", start, end)
            for writer in writers:
                commits += [(int(p), int(ns)) for p, ns in writer.answer()["commits"]]
        server_cpu = (served.cpu_seconds() - cpu_before) / ((time.monotonic_ns() - start) / 1e9)
        last = max(p for p, _ in commits)
        seen: list[tuple[list[int], list[int]]] = []
        client_cpu = []
        reconnects = 0
        for sub in subscribers:
            sub.send("drain", last, 60)
            reply = sub.answer()
            seen += [(list(ps), list(ts)) for ps, ts in reply["seen"]]
            client_cpu.append(float(reply["cpu"]) / float(reply["wall"]))
            reconnects += int(reply["reconnects"])
        rss_after = served.rss_kib()
    finally:
        for process in [*subscribers, *writers]:
            process.close()
    expected = _run_positions(store, STREAM_RUN)
    committed = dict(commits)
    lags: list[float] = []
    gaps = duplicates = disorder = unexpected = 0
    for positions, moments in seen:
        g, d, o, u = _check_stream(positions, expected, last)
        gaps, duplicates, disorder, unexpected = (
            gaps + g,
            duplicates + d,
            disorder + o,
            unexpected + u,
        )
        lags += [
            (moment - committed[p]) / 1e6
            for p, moment in zip(positions, moments, strict=True)
            if p in committed
        ]
    return StreamResult(
        subscribers=profile.subscribers,
        client_processes=profile.client_processes,
        writers=profile.writers,
        rate=profile.rate,
        seconds=profile.seconds,
        commits=len(commits),
        lags_ms=lags,
        gaps=gaps,
        duplicates=duplicates,
        out_of_order=disorder,
        unexpected=unexpected,
        reconnects=reconnects,
        rss_before_kib=rss_before,
        rss_attached_kib=rss_attached,
        rss_after_kib=rss_after,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        poll=poll,
        holders=holders,
    )


def measure_backend(
    results: HttpResults, backend: str, stores: dict[str, str], poll: float | None
) -> None:
    """Both measurements on one backend, on three empty stores of it.

    ``stores``: ``served`` (the server's) and ``inproc`` (the baseline's ledger).
    ``poll``: the server's ``--poll-interval`` (SQLite; None keeps the default, for
    PostgreSQL, which wakes on NOTIFY).
    """
    served_store = stores["served"]
    profile = results.profile
    log(f"http: {backend}: starting ckl serve")
    writers = _start_writers(profile, served_store)
    try:
        served = _Served(served_store, poll, max_streams=profile.subscribers + 10)
        try:
            # Every writer has made its checkpoint and untimed yields before anything is timed.
            target = max(int(writer.ready()) for writer in writers)
            results.yields[backend] = _measure_yields(profile, served, stores, backend)
            log(
                f"http: {backend}: {profile.subscribers} SSE subscribers, {profile.writers} writers"
            )
            results.streams[backend] = _measure_streams(
                profile, served, store=served_store, poll=poll, writers=writers, target=target
            )
        finally:
            served.stop()
    finally:
        for writer in writers:
            writer.close()


# ---------------------------------------------------------------------- the report


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_LABELS = {
    "inproc": "in-process `ledger.checkpoint_yield` (baseline)",
    "httpx": "**`POST …/yield`, `httpx.Client`** (keep-alive)",
    "http.client": "`POST …/yield`, `http.client.HTTPConnection` (keep-alive)",
    "health": "`GET /v1/health`, `http.client` (no ledger call: the HTTP floor)",
}


def _yield_table(result: YieldResult) -> str:
    comp = result.comparison
    rows = []
    for name in comp.names:
        values = result.samples[name]
        ratio = comp.ratio(name, "inproc")
        p50 = statistics.median(values) * 1e6
        base = statistics.median(result.samples["inproc"]) * 1e6
        rows.append(
            [
                _LABELS[name],
                micros(p50),
                micros(_quantile(values, 0.99) * 1e6),
                micros(comp.cost_us(name).median),
                times_spread(ratio),
                times(p50 / base),
                micros(comp.cpu_us(name).median),
                micros(result.server_cpu_us[name]) if name in result.server_cpu_us else "",
            ]
        )
    header = [
        "variant",
        "p50 µs",
        "p99 µs",
        "mean µs (median of rounds)",
        "÷ in-process (rounds: median, p25–p75)",
        "p50 ÷ in-process p50",
        "client CPU µs",
        "server CPU µs",
    ]
    return table(header, rows)


def _lags(lags: list[float]) -> str:
    if not lags:
        return "nothing received"
    p50, p99 = statistics.median(lags), _quantile(lags, 0.99)
    return f"{p50:.1f} / {p99:.1f} / {max(lags):.1f} ms"


def _stream_table(results: HttpResults) -> str:
    rows = []
    for backend, s in results.streams.items():
        per_sub = (s.rss_attached_kib - s.rss_before_kib) / s.subscribers
        after = (s.rss_after_kib - s.rss_before_kib) / s.subscribers
        poll = f"SQLite, `--poll-interval {s.poll}`" if s.poll is not None else backend
        rows.append(
            [
                poll,
                f"{s.subscribers} in {s.client_processes} process(es)",
                f"{s.writers} × {s.rate:.0f}/s, {s.commits:,} yields",
                _lags(s.lags_ms),
                (
                    f"{s.gaps} / {s.duplicates} / {s.out_of_order} / {s.unexpected}; "
                    f"{s.reconnects} reconnects"
                ),
                f"{per_sub:.0f} KiB ({after:.0f} KiB after the load)",
                " → ".join(
                    f"{kib / 1024:.0f}"
                    for kib in (s.rss_before_kib, s.rss_attached_kib, s.rss_after_kib)
                )
                + " MiB",
                f"{s.server_cpu:.0%} / " + " + ".join(f"{c:.0%}" for c in s.client_cpu),
            ]
        )
    header = [
        "backend",
        "subscribers",
        "writers (processes)",
        "lag p50 / p99 / max",
        "gaps / duplicates / out of order / unexpected",
        "server RSS per subscriber",
        "server RSS with 1 stream → all → after the load",
        "CPU of a core: server / subscriber processes",
    ]
    return table(header, rows)


def _holders_lines(results: HttpResults) -> list[str]:
    out = []
    for backend, s in results.streams.items():
        found = s.holders
        if found is None:
            continue
        if not found.ages_ms:
            out += [f"{backend}: no transaction held an xid at any of {found.samples} samples.", ""]
            continue
        ages = found.ages_ms
        total = sum(found.by_statement.values())
        what = ", ".join(
            f"`{statement}…` {count / total:.0%}"
            for statement, count in found.by_statement.most_common(4)
        )
        out += [
            text(
                f"{backend}: the oldest transaction holding an xid (so holding back the visible ",
                "horizon every log reader, the stream hub included, stops at), sampled from ",
                "`pg_stat_activity` every 20 ms while the writers wrote: one found at ",
                f"{len(ages)} of {found.samples} samples, its age p50 ",
                f"{statistics.median(ages):.1f} ms, p99 {_quantile(ages, 0.99):.1f} ms, max ",
                f"{max(ages):.1f} ms; when older than 10 ms it was running: {what or 'nothing'}.",
            ),
            "",
        ]
    return out


def summary_rows(results: HttpResults) -> list[list[str]]:
    """The summary's lines about section 11."""
    rows = []
    for backend, result in results.yields.items():
        ratio = result.comparison.ratio("httpx", "inproc")
        rows.append(
            [
                f"{backend}: a yield over HTTP (`ckl serve`, httpx keep-alive) ÷ in-process",
                f"≤ {YIELD_GOAL}×",
                times_spread(ratio),
                verdict(ratio.median, YIELD_GOAL),
            ]
        )
    for backend, s in results.streams.items():
        p99 = _quantile(s.lags_ms, 0.99)
        clean = s.gaps == s.duplicates == s.out_of_order == s.unexpected == 0
        goal = f"p99 ≤ {LAG_GOAL_MS:.0f} ms" if s.poll is None else "reference (polls)"
        met = (verdict(p99, LAG_GOAL_MS) if s.poll is None else "") if clean else "**gaps**"
        rows.append(
            [
                f"{backend}: SSE delivery lag, {s.subscribers} subscribers, {s.writers} writers",
                goal + ", no gap or duplicate",
                (
                    f"p50 {statistics.median(s.lags_ms):.1f} ms, p99 {p99:.1f} ms; "
                    f"{s.gaps} gaps, {s.duplicates} duplicates"
                ),
                met,
            ]
        )
    return rows


def section(results: HttpResults) -> list[str]:
    """The report's section 11."""
    p = results.profile
    out = [
        "## 11. `ckl serve`: a yield over HTTP, and SSE subscribers",
        "",
        text(
            "One real `ckl serve` subprocess per backend (uvicorn on loopback, `--port 0`). ",
            "**Yield over HTTP**: interleaved rounds of four variants, each on its own ",
            "checkpoint: the in-process `ledger.checkpoint_yield` on a store of the same kind ",
            "(a SQLite file beside the server's; a PostgreSQL database of its own on the same ",
            "server), `POST /v1/runs/R/checkpoints/N/yield` through `httpx.Client` and through ",
            "`http.client.HTTPConnection` (keep-alive; the reply's JSON parsed), and ",
            "`GET /v1/health` (the server's floor: no ledger call). ",
            f"{p.rounds} rounds × {p.batch} operations per variant; p50 and p99 are over every ",
            "operation, the ratio is taken round by round. Client CPU: this process, per ",
            f"operation; server CPU: the server process (all its threads) over {p.alone} ",
            "requests made alone. ",
            f"Goal: a yield over HTTP ≤ {YIELD_GOAL}× in-process.",
        ),
        "",
    ]
    for backend, result in results.yields.items():
        ratio = result.comparison.ratio("httpx", "inproc")
        cheap = result.comparison.ratio("http.client", "inproc")
        out += [
            f"### {backend}",
            "",
            _yield_table(result),
            "",
            text(
                f"httpx: {times_spread(ratio)} in-process — ",
                f"{verdict(ratio.median, YIELD_GOAL)}; http.client: {times_spread(cheap)} — ",
                f"{verdict(cheap.median, YIELD_GOAL)}.",
            ),
            "",
        ]
    out += [
        "### SSE: subscribers on one run while writer processes append",
        "",
        text(
            f"`GET /v1/runs/R/stream` from the run's start, {p.subscribers} streams read with ",
            "raw sockets by one selector thread per subscriber process; writers: separate ",
            "processes, each its own `Ledger` on the server's store and its own checkpoint of ",
            f"the run, one durable yield every {1000 / p.rate:.0f} ms for {p.seconds:.0f} s. ",
            "Lag: the subscriber's `recv` returned the frame − the writer's append committed ",
            "(`CLOCK_MONOTONIC`); every stream's positions checked against the store's log. ",
            "Server RSS per subscriber: (RSS with the streams attached − RSS with one stream ",
            f"attached, opened first) ÷ {p.subscribers}; that first stream is checked too. ",
            f"Goal (PostgreSQL): lag p99 ≤ {LAG_GOAL_MS:.0f} ms.",
        ),
        "",
        _stream_table(results),
        "",
        *_holders_lines(results),
        "Summary lines:",
        "",
        table(["figure", "goal", "measured: median (p25–p75)", "verdict"], summary_rows(results)),
        "",
    ]
    return out
