"""End to end: real servers on 127.0.0.1 under load, with and without ``SpiffileMiddleware``.

uvicorn (ASGI) and gunicorn (WSGI) run in their own processes and serve the
trivial endpoint of :mod:`benchmarks._e2e_app`; ``wrk`` (a separate process,
keep-alive connections) drives them.  For each server, four modes:

- ``plain``: the same endpoint without the middleware, no token;
- ``header``: the endpoint without the middleware, each request carrying
  the same ``Authorization`` header as in ``reused`` (what the server pays
  to read a request some 400 bytes longer, which is not spiffile's cost);
- ``reused``: one token, minted by the sender's ``Identity.token`` and sent
  on every request, as ``SpiffileAuth`` does while the token is younger
  than half its lifetime (the server's verified-token cache answers);
- ``fresh``: every request carries a token the server has never seen,
  from a pool minted by the sender before the run (so the load process
  does no signing; ECDSA signatures are randomised, so every token text
  differs), handed out in order from an offset that moves past the tokens
  earlier runs against the same server used.

A row is requests per second with authentication, divided by the same
server's rate without it, the ratio taken within each round; rounds are
interleaved (every server and mode once per round, rotated order) and the
median is reported.  The server's CPU time per request (from ``/proc``) and
the load generator's CPU use are in each row's note and JSON.

Placement on a small machine: a one-worker server is pinned to one CPU and
``wrk`` to another (``taskset``), so neither steals the other's core.
Two-worker servers (the scaling study) and their load generator share every
CPU: on a 2-core machine the load generator takes a little of the workers'
time, so those rows understate a dedicated machine.

``wrk`` must be on PATH (Debian: ``apt-get install wrk``), and uvicorn and
gunicorn installed (the ``bench`` or ``test`` extra); without them the suite
says so and returns no rows.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from benchmarks._e2e_app import IDENTITY_ENV
from benchmarks._fixtures import AUDIENCE, SENDER, KeyPool, bundle_bytes, identity_dir
from benchmarks._report import Row, Target
from benchmarks.core import Settings
from spiffile.identity import Identity

__all__ = [
    "MODES",
    "SERVERS",
    "Fixture",
    "Running",
    "ServerSpec",
    "WrkResult",
    "check_answers",
    "make_fixture",
    "run",
    "run_wrk",
    "serve",
    "write_scripts",
    "wrk_path",
]

_REPO: Final = Path(__file__).resolve().parent.parent
MODES: Final = ("plain", "header", "reused", "fresh")
#: The modes served by the app with the middleware.
_AUTHENTICATED: Final = ("reused", "fresh")
#: Lifetime of the benchmark's tokens: longer than a full run, within the
#: verifiers' default maximum lifetime (one hour).
_TTL: Final = 1800
#: Connections wrk keeps open (one thread: a C load generator is far from
#: saturated at a Python server's rates).
_CONNECTIONS: Final = 16


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration: which server, how many worker processes, which worker class."""

    key: str
    label: str
    kind: str  # "asgi" or "wsgi"
    workers: int = 1
    worker_class: str = ""  # gunicorn: "gthread" or "sync"
    threads: int = 1
    #: Part of the scaling study (fewer rounds, no reused-token runs), not the headline rows.
    study: bool = False
    #: uvicorn's event loop and HTTP parser ("auto": uvloop and httptools when installed).
    loop: str = "auto"
    http: str = "auto"

    @property
    def modes(self) -> tuple[str, ...]:
        return ("plain", "fresh") if self.study else MODES

    def command(self, port: int) -> list[str]:
        """The server's command line, listening on 127.0.0.1:*port*."""
        if self.kind == "asgi":
            return [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks._e2e_app:asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
                "--no-access-log",
                "--lifespan",
                "off",
                "--loop",
                self.loop,
                "--http",
                self.http,
            ]
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "benchmarks._e2e_app:wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--log-level",
            "warning",
            "--keep-alive",
            "5",
        ]
        if self.worker_class == "gthread":
            command += ["--threads", str(self.threads)]
        return command


SERVERS: Final = (
    ServerSpec("uvicorn", "uvicorn, 1 worker", "asgi"),
    ServerSpec(
        "uvicorn_h11", "uvicorn (asyncio, h11), 1 worker", "asgi", loop="asyncio", http="h11"
    ),
    ServerSpec("gunicorn", "gunicorn gthread, 1 worker x 4 threads", "wsgi", 1, "gthread", 4),
    ServerSpec("uvicorn_w2", "uvicorn, 2 workers", "asgi", 2, study=True),
    ServerSpec(
        "gunicorn_w2", "gunicorn gthread, 2 workers x 4 threads", "wsgi", 2, "gthread", 4, True
    ),
    ServerSpec("gunicorn_sync", "gunicorn sync, 1 worker", "wsgi", 1, "sync", study=True),
    ServerSpec("gunicorn_sync_w2", "gunicorn sync, 2 workers", "wsgi", 2, "sync", study=True),
)


#: Two-worker configurations and the one-worker configuration they are compared with.
_SCALES: Final = {
    "uvicorn_w2": "uvicorn",
    "gunicorn_w2": "gunicorn",
    "gunicorn_sync_w2": "gunicorn_sync",
}


def _uvicorn_auto() -> str:
    """What uvicorn's ``--loop auto --http auto`` picks here."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop}, {parser}"


def _label(spec: ServerSpec) -> str:
    if spec.kind == "asgi" and spec.loop == "auto":
        return spec.label.replace("uvicorn,", f"uvicorn ({_uvicorn_auto()}),", 1)
    return spec.label


def wrk_path() -> str | None:
    """Where ``wrk`` is, or None."""
    return shutil.which("wrk")


def _placement() -> tuple[list[int], list[int], str]:
    """(server CPUs, load CPUs, how) for one-worker servers; empty lists: no pinning."""
    if not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
        return [], [], "not pinned (no sched_getaffinity or taskset)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [], [], f"not pinned (only CPU {cpus} available)"
    return (
        [cpus[0]],
        [cpus[1]],
        f"1-worker servers on CPU {cpus[0]}, wrk on CPU {cpus[1]}; "
        f"2-worker servers and their wrk share CPUs {','.join(map(str, cpus))}",
    )


def _pinned(command: list[str], cpus: Sequence[int]) -> list[str]:
    if not cpus:
        return command
    return ["taskset", "-c", ",".join(map(str, cpus)), *command]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{current}/task/{task}/children").read_text()
                    todo.extend(int(child) for child in children.split())
    return found


def _tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of *pid* and its live descendants (Linux ``/proc``), or None."""
    total = 0
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return None
    for process in _descendants(pid):
        try:
            stat = Path(f"/proc/{process}/stat").read_text()
        except OSError:
            if process == pid:
                return None
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


@dataclass
class Running:
    """A server process serving one configuration."""

    spec: ServerSpec
    auth: bool
    port: int
    process: subprocess.Popen[bytes]
    #: Fresh tokens this server has been sent so far (the next run starts after them).
    fresh_used: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cpu_seconds(self) -> float | None:
        return _tree_cpu_seconds(self.process.pid)


def _get(address: tuple[str, int], token: str | None, timeout: float = 5.0) -> int:
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@contextlib.contextmanager
def serve(
    spec: ServerSpec, identity: Path | None, cpus: Sequence[int] = (), *, timeout: float = 30.0
) -> Iterator[Running]:
    """Start *spec*'s server (authenticating with *identity*, or bare), wait until it answers."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(_REPO), **{IDENTITY_ENV: str(identity or "")})
    process = subprocess.Popen(
        _pinned(spec.command(port), cpus),
        cwd=_REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    running = Running(spec, identity is not None, port, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                code = process.returncode
                raise RuntimeError(f"{spec.label} exited with {code}: {error[-2000:]}")
            try:
                _get(running.address, None, timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{spec.label} did not answer within {timeout} s") from None
                time.sleep(0.05)
        yield running
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (it was started in a new session), then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # Workers left behind by a crashed master.
    if process.stderr is not None:
        process.stderr.close()


@dataclass(frozen=True)
class Fixture:
    """The receiver's identity directory, the sender's token, the pool of fresh tokens."""

    receiver: Path
    reused: str
    fresh_file: Path
    fresh_count: int


def make_fixture(pool: KeyPool, workdir: Path, fresh: int) -> Fixture:
    """Write the two workloads' files and mint the tokens (all before any timing)."""
    two = bundle_bytes(2, pool)
    base = workdir / "e2e"
    base.mkdir()
    sender_dir = identity_dir(base, "sender", SENDER, pool.private[0], two)
    receiver = identity_dir(base, "receiver", AUDIENCE, pool.private[1], two)
    sender = Identity.from_dir(sender_dir, token_cache_size=0)
    reused = Identity.from_dir(sender_dir).token(AUDIENCE, ttl=_TTL)
    tokens = [sender.token(AUDIENCE, ttl=_TTL) for _ in range(fresh)]
    if len(set(tokens)) != len(tokens):
        raise RuntimeError("two minted tokens are the same text")  # Signatures are randomised.
    fresh_file = base / "fresh-tokens.txt"
    fresh_file.write_text("\n".join(tokens) + "\n")
    return Fixture(receiver, reused, fresh_file, len(tokens))


def check_answers(running: Running, fixture: Fixture) -> dict[str, int]:
    """The status codes the server gives with no token, the reused token and a fresh one.

    The benchmark calls this before timing anything, so a misconfigured
    server (everything refused, or nothing checked) cannot pass for a fast
    one.  The fresh token checked is the pool's last, which no timed run
    reaches before the pool wraps.
    """
    last = fixture.fresh_file.read_text().split()[-1]
    answers = {
        "none": _get(running.address, None),
        "reused": _get(running.address, fixture.reused),
        "fresh": _get(running.address, last),
        "bad": _get(running.address, fixture.reused[:-4] + "AAAA"),
    }
    expected = (
        {"none": 401, "reused": 200, "fresh": 200, "bad": 401}
        if running.auth
        else dict.fromkeys(answers, 200)
    )
    if answers != expected:
        raise RuntimeError(f"{running.spec.label}: answers {answers}, expected {expected}")
    return answers


#: What every wrk script ends with: the summary as one JSON line.
_DONE: Final = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
#: plain and reused: no request() function, so wrk builds each thread's request once.
_STATIC: Final = r"""
-- Written by benchmarks/e2e.py.  args: [token]
function init(args)
  if args[1] ~= nil then
    wrk.headers["Authorization"] = "Bearer " .. args[1]
  end
end
"""
#: fresh: every request takes the next token of the pool (thread k: offset + k + n * threads).
_FRESH: Final = r"""
-- Written by benchmarks/e2e.py.  args: token file, offset, threads
local counter = 0
local tokens, n, i, step = {}, 0, 0, 1

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    tokens[n] = line
  end
  i = tonumber(args[2]) + index
  step = tonumber(args[3])
end

function request()
  i = i + step
  if i > n then i = (i - 1) % n + 1 end
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


def write_scripts(directory: Path) -> dict[str, Path]:
    """The wrk scripts of each mode, written into *directory*."""
    static, fresh = directory / "static.lua", directory / "fresh.lua"
    static.write_text(_STATIC + _DONE)
    fresh.write_text(_FRESH + _DONE)
    return {"plain": static, "header": static, "reused": static, "fresh": fresh}


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: requests completed, seconds, errors, and CPU time on both sides."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    load_cpu_seconds: float
    server_cpu_seconds: float | None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    running: Running,
    mode: str,
    fixture: Fixture,
    seconds: int,
    scripts: dict[str, Path],
    cpus: Sequence[int] = (),
    *,
    threads: int = 1,
) -> WrkResult:
    """Drive *running* for *seconds* in *mode*; the fresh pool's offset moves past what was sent."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not on PATH")
    args: list[str] = []
    if mode in ("header", "reused"):
        args.append(fixture.reused)
    elif mode == "fresh":
        args += [str(fixture.fresh_file), str(running.fresh_used), str(threads)]
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={_CONNECTIONS}",
        f"--duration={seconds}s",
        "--timeout=10s",
        f"--script={scripts[mode]}",
        running.url,
        "--",
        *args,
    ]
    before_load = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = running.cpu_seconds()
    done = subprocess.run(
        _pinned(command, cpus), capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    after_server = running.cpu_seconds()
    after_load = resource.getrusage(resource.RUSAGE_CHILDREN)
    marker = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not marker:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(marker[-1][len("RESULT ") :])
    if mode == "fresh":
        running.fresh_used += result["requests"]
    return WrkResult(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        non_2xx=result["status"],
        socket_errors=result["connect"] + result["read"] + result["write"] + result["timeout"],
        load_cpu_seconds=(after_load.ru_utime - before_load.ru_utime)
        + (after_load.ru_stime - before_load.ru_stime),
        server_cpu_seconds=(
            None if before_server is None or after_server is None else after_server - before_server
        ),
    )


@dataclass
class _Series:
    results: list[WrkResult] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [r.rate for r in self.results]

    def cpu_us_per_request(self) -> float | None:
        values = [
            r.server_cpu_seconds / r.requests * 1e6
            for r in self.results
            if r.server_cpu_seconds is not None and r.requests
        ]
        return statistics.median(values) if values else None

    def load_share(self) -> float:
        return statistics.median(r.load_cpu_seconds / r.seconds for r in self.results)


def _interleave(
    plan: list[tuple[Running, str]],
    rounds: int,
    seconds: int,
    fixture: Fixture,
    scripts: dict[str, Path],
    placement: dict[str, list[int]],
) -> dict[tuple[str, str], _Series]:
    series: dict[tuple[str, str], _Series] = {}
    for index in range(rounds):
        shift = index % len(plan)
        for running, mode in [*plan[shift:], *plan[:shift]]:
            cpus = placement[running.spec.key]
            result = run_wrk(running, mode, fixture, seconds, scripts, cpus)
            if result.non_2xx:
                raise RuntimeError(
                    f"{running.spec.label}, {mode}: {result.non_2xx} of {result.requests} "
                    "answers were not 2xx; the rate would not be the endpoint's"
                )
            series.setdefault((running.spec.key, mode), _Series()).results.append(result)
    return series


def run(pool: KeyPool, settings: Settings, workdir: Path) -> list[Row]:
    """Measure the end-to-end rows; returns them in table order (none without wrk)."""
    if wrk_path() is None:
        print(
            "e2e: wrk is not on PATH, so the end-to-end rows are skipped "
            "(Debian/Ubuntu: apt-get install wrk)",
            file=sys.stderr,
            flush=True,
        )
        return []
    missing = [name for name in ("uvicorn", "gunicorn") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"e2e: {' and '.join(missing)} not installed, so the end-to-end rows are skipped "
            "(pip install -e '.[bench]')",
            file=sys.stderr,
            flush=True,
        )
        return []
    quick = settings.quick
    main_rounds, study_rounds = (1, 1) if quick else (5, 2)
    main_seconds, study_seconds = (1, 1) if quick else (2, 2)
    server_cpus, load_cpus, how = _placement()
    # Never-seen tokens for every fresh run against one server at up to 6k
    # requests/s; past that the pool wraps (long after a token has left the
    # 1024-entry verified-token cache) and the row's note says so.
    fresh = 6_000 * main_rounds * main_seconds
    fixture = make_fixture(pool, workdir, int(fresh))
    scripts = write_scripts(workdir / "e2e")
    placement: dict[str, list[int]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[tuple[str, bool], Running] = {}
        for spec in SERVERS:
            cpus = server_cpus if spec.workers == 1 else []
            placement[spec.key] = load_cpus if spec.workers == 1 else []
            for auth in (False, True):
                running = stack.enter_context(serve(spec, fixture.receiver if auth else None, cpus))
                check_answers(running, fixture)
                servers[(spec.key, auth)] = running

        def plan(study: bool) -> list[tuple[Running, str]]:
            return [
                (servers[(spec.key, mode in _AUTHENTICATED)], mode)
                for spec in SERVERS
                if spec.study is study
                for mode in spec.modes
            ]

        series = _interleave(
            plan(False), main_rounds, main_seconds, fixture, scripts, placement
        ) | _interleave(plan(True), study_rounds, study_seconds, fixture, scripts, placement)
        wrapped = {
            spec.key: servers[(spec.key, True)].fresh_used > fixture.fresh_count for spec in SERVERS
        }
    return _rows(series, how, fixture.fresh_count, wrapped)


_MODE_LABELS: Final = {
    "header": "no authentication, token header sent",
    "reused": "reused token",
    "fresh": "fresh token each request",
}


def _rows(
    series: dict[tuple[str, str], _Series], how: str, pool: int, wrapped: dict[str, bool]
) -> list[Row]:
    rows: list[Row] = []
    for spec in SERVERS:
        plain = series[(spec.key, "plain")]
        base_rate = statistics.median(plain.rates())
        base_cpu = plain.cpu_us_per_request()
        for mode in spec.modes:
            current = series[(spec.key, mode)]
            cpu = current.cpu_us_per_request()
            cpu_text = "-" if cpu is None else f"{cpu:.0f} us"
            if mode != "plain" and cpu and base_cpu:
                # CPU time is what contention on a shared machine disturbs least.
                cpu_text += f" (no auth {base_cpu:.0f} us: {base_cpu / cpu:.2f}x)"
            note = (
                f"server CPU {cpu_text}/request, wrk {current.load_share():.0%} of a CPU, "
                f"{statistics.median(r.socket_errors for r in current.results):.0f} socket errors"
            )
            if mode == "fresh" and wrapped[spec.key]:
                note += f"; the {pool}-token pool wrapped (each token long out of the cache)"
            if spec.worker_class == "sync":
                note += "; sync workers close the connection after each response"
            extra: dict[str, Any] = {
                "server": spec.key,
                "mode": mode,
                "workers": spec.workers,
                "rates": current.rates(),
                "server_cpu_us_per_request": cpu,
                "placement": how,
            }
            if mode == "plain":
                rows.append(
                    Row(
                        f"e2e_{spec.key}_plain",
                        f"{_label(spec)}: no authentication",
                        base_rate,
                        "req/s",
                        note=note,
                        extra=extra,
                    )
                )
                continue
            extra["plain_cpu_us_per_request"] = base_cpu
            ratios = [a / b for a, b in zip(current.rates(), plain.rates(), strict=True)]
            label = _MODE_LABELS[mode]
            if mode == "reused":
                header = series[(spec.key, "header")].rates()
                same_bytes = statistics.median(
                    a / b for a, b in zip(current.rates(), header, strict=True)
                )
                extra["ratio_to_header"] = same_bytes
                note += f"; against the bare app sent the same header: {same_bytes:.3f}x"
            rows.append(
                Row(
                    f"e2e_{spec.key}_{mode}",
                    f"{_label(spec)}: {label}",
                    statistics.median(current.rates()),
                    "req/s",
                    baseline="no auth",
                    baseline_value=base_rate,
                    ratio=statistics.median(ratios),
                    target=Target(">=", 0.95) if mode == "reused" else None,
                    note=note,
                    extra=extra,
                )
            )
    for spec in SERVERS:
        single = _SCALES.get(spec.key)
        if single is None:
            continue
        for mode in ("plain", "fresh"):
            two = statistics.median(series[(spec.key, mode)].rates())
            one = statistics.median(series[(single, mode)].rates())
            rows.append(
                Row(
                    f"e2e_scale_{spec.key}_{mode}",
                    f"{_label(spec)} / 1 worker, {mode}",
                    two,
                    "req/s",
                    baseline="1 worker",
                    baseline_value=one,
                    ratio=two / one,
                    note=(
                        "1 worker pinned to one CPU, wrk on the other; 2 workers share both "
                        "with wrk; medians of separate interleaved series"
                    ),
                )
            )
    return rows
