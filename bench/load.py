"""`make bench-load`: the service under concurrent clients, on loopback only.

Starts `renda serve` on a free 127.0.0.1 port as its own process (or uses one already running,
with --url, and --pid for its memory), warms it up under the same load, then runs a scenario's clients for T
seconds: `interactive`, 8 clients posting 1–4 paragraphs (half with their heading path) while 2
clients post whole reports back to back; `stress`, N clients each posting 1–4 paragraphs or, 5% of
the time, a whole report. Every paragraph sent is tagged new, and the started server's cache is off
(whole reports repeat), so the cache never answers for the model. Paragraphs and reports come from
the corpus (default ../shared/corpus and its reports/), else from the project's own starter reports.

Reports requests/s, paragraphs/s, p50/p95/p99 latency (overall, single-paragraph requests apart,
and whole reports apart), errors (5xx and timeouts apart from the documented 503s of a full queue),
how long /readyz took at worst, and the server's RSS after warm-up and at the end. Bounded: it
stops sending at the deadline or after --max-requests, every request has a timeout, and the
server it started is stopped (SIGTERM, then SIGKILL) whatever happens.

usage: python -m bench.load --model DIR [--clients 32] [--seconds 60] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.helpers import free_port, rss_mb
from renda.records import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
REPORT_SHARE = 0.05
MAX_PARAGRAPHS_A_REQUEST = 4


@dataclass
class Mix:
    """What the clients send: paragraphs (text, heading path) and whole reports."""
    paragraphs: list[tuple[str, list[str]]]
    reports: list[str]
    source: str

    @classmethod
    def load(cls, corpus: Path) -> "Mix":
        from renda.corpus import load_corpus
        from renda.records import read_text_file

        if not corpus.is_dir():
            corpus = ROOT / "data" / "starter"  # the project's own fictional reports
        records = load_corpus([corpus]).records
        report_dir = corpus / "reports" if (corpus / "reports").is_dir() else corpus
        reports = [read_text_file(p) for p in sorted(report_dir.glob("*.txt")) if p.name.lower() != "readme.txt"]
        return cls([(r.text, list(r.heading_path or [])) for r in records], reports, str(corpus))

    sent: int = 0  # every paragraph sent carries a new tag, so a cache could never answer it

    def tag(self, text: str) -> str:
        self.sent += 1
        return f"{text} #{self.sent}"

    def request(self, rng: random.Random, role: str = "mixed") -> tuple[str, str, dict, int]:
        """(kind, path, body, paragraphs sent): kind is "report", "single" or "multi". `role`: "mixed"
        (a whole report REPORT_SHARE of the time), "paragraphs" (never one) or "reports" (always)."""
        if self.reports and (role == "reports" or role == "mixed" and rng.random() < REPORT_SHARE):
            # sent as it is (a tag on its lines would change how its closing lines parse): the server's cache is off
            return "report", "/v1/reports", {"text": rng.choice(self.reports)}, 0
        n = rng.randint(1, MAX_PARAGRAPHS_A_REQUEST)
        picked = [rng.choice(self.paragraphs) for _ in range(n)]
        paragraphs = [{"text": self.tag(t), "heading_path": p} if p and rng.random() < 0.5 else self.tag(t) for t, p in picked]
        return ("single" if n == 1 else "multi"), "/v1/classify", {"paragraphs": paragraphs}, n


# The two loads `make bench-load` measures: each a list of client roles.
SCENARIOS = {
    "interactive": ["paragraphs"] * 8 + ["reports"] * 2,  # people labelling a few paragraphs beside two archive jobs
    "stress": ["mixed"] * 32,  # CLIENTS clients, a whole report 5% of the time
}


def roles_of(scenario: str, clients: int) -> list[str]:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS)}")
    return SCENARIOS[scenario] if scenario != "stress" else ["mixed"] * clients


@dataclass
class Outcome:
    kind: str
    seconds: float
    paragraphs: int  # labelled in the answer (0 for an error)
    error: str = ""


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    sent: int = 0
    refused: int = 0  # 503 with Retry-After: the queue was full (the client waits as told, then goes on)
    readyz: list[float] = field(default_factory=list)  # seconds /readyz took, polled throughout


async def client(http: httpx.AsyncClient, mix: Mix, role: str, rng: random.Random, deadline: float, load: Load, max_requests: int) -> None:
    while time.monotonic() < deadline and load.sent < max_requests:
        load.sent += 1
        kind, path, body, _ = mix.request(rng, role)
        began = time.perf_counter()
        try:
            response = await http.post(path, json=body)
            seconds = time.perf_counter() - began
            if response.status_code == 503 and "Retry-After" in response.headers:  # the documented refusal of a full queue
                load.refused += 1
                await asyncio.sleep(min(float(response.headers["Retry-After"]), max(0.0, deadline - time.monotonic())))
                continue
            if response.status_code != 200:
                load.outcomes.append(Outcome(kind, seconds, 0, f"HTTP {response.status_code}: {response.text[:200]}"))
                continue
            answer = response.json()
            labelled = len(answer["results"]) if kind != "report" else len(answer["paragraphs"])
            load.outcomes.append(Outcome(kind, seconds, labelled))
        except (httpx.HTTPError, ValueError, KeyError) as error:
            load.outcomes.append(Outcome(kind, time.perf_counter() - began, 0, f"{type(error).__name__}: {error}"[:200]))


async def watch_ready(url: str, deadline: float, load: Load, timeout: float) -> None:
    """/readyz polled every half second on a connection of its own: does the service still answer at once?"""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                await http.get("/readyz")
                load.readyz.append(time.perf_counter() - began)
            except httpx.HTTPError:
                load.readyz.append(timeout)
            await asyncio.sleep(0.5)


async def run_load(url: str, mix: Mix, roles: list[str], seconds: float, seed: int, timeout: float, max_requests: int) -> tuple[Load, float]:
    load = Load()
    limits = httpx.Limits(max_connections=len(roles), max_keepalive_connections=len(roles))
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        tasks = [client(http, mix, role, random.Random(seed * 1000 + i), deadline, load, max_requests) for i, role in enumerate(roles)]
        tasks.append(watch_ready(url, deadline, load, timeout))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + timeout + 5)  # in flight at the deadline: finished
        return load, time.monotonic() - started


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"count": len(values), "p50_ms": round(1000 * statistics.median(ordered), 1), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(1000 * ordered[-1], 1)}


def summarise(load: Load, elapsed: float) -> dict:
    ok = [o for o in load.outcomes if not o.error]
    errors = [o for o in load.outcomes if o.error]
    return {
        "requests": len(load.outcomes), "seconds": round(elapsed, 2),
        "requests_per_second": round(len(load.outcomes) / elapsed, 2),
        "paragraphs_per_second": round(sum(o.paragraphs for o in ok) / elapsed, 2),
        "errors": len(errors), "error_samples": sorted({o.error for o in errors})[:5],
        "server_errors": sum(o.error.startswith("HTTP 5") for o in errors),  # 5xx other than the documented 503s
        "timeouts": sum("Timeout" in o.error for o in errors),
        "refused_503": load.refused,
        "readyz_max_ms": round(1000 * max(load.readyz), 1) if load.readyz else None,
        "latency": percentiles([o.seconds for o in ok]),
        "latency_single_paragraph": percentiles([o.seconds for o in ok if o.kind == "single"]),
        "latency_2_to_4_paragraphs": percentiles([o.seconds for o in ok if o.kind == "multi"]),
        "latency_whole_report": percentiles([o.seconds for o in ok if o.kind == "report"]),
    }


def is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wait_ready(url: str, process: subprocess.Popen | None, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    with httpx.Client(base_url=url, timeout=5) as http:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode} before it was ready")
            try:
                if http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"{url} was not ready within {limit_s:.0f} s")


def start_server(model: Path, env_overrides: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING", **env_overrides}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "apps.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run(model: Path | None = None, clients: int = 32, seconds: float = 60, warmup: float = 5, corpus: Path = ROOT.parent / "shared" / "corpus",
        url: str | None = None, pid: int | None = None, cache_size: int = 0, backend: str | None = None, seed: int = 13,
        timeout: float = 60, max_requests: int = 1_000_000, ready_timeout: float = 300, out: Path | None = None,
        scenario: str = "stress") -> dict:
    """One scenario's load (SCENARIOS) against a started or running server."""
    roles = roles_of(scenario, clients)
    if url is None and model is None:
        raise ValueError("give --model (a server is started) or --url (a running one)")
    if url is not None and not is_loopback(url):
        raise ValueError(f"{url}: loopback addresses only (127.0.0.0/8, localhost, [::1])")
    mix = Mix.load(Path(corpus))
    process, log_dir = None, tempfile.TemporaryDirectory(prefix="renda-bench-load-")
    try:
        if url is None:
            overrides = {"CACHE_SIZE": str(cache_size), **({"BACKEND": backend} if backend else {})}
            process, url = start_server(Path(model), overrides, Path(log_dir.name) / "server.log")
            pid = process.pid
        wait_ready(url, process, ready_timeout)
        info = httpx.get(f"{url}/v1/model", timeout=10).json()
        rss_loaded = rss_mb(pid) if pid else None
        if warmup > 0:
            asyncio.run(run_load(url, mix, roles, warmup, seed + 1, timeout, max_requests))
        rss_before = rss_mb(pid) if pid else None
        load, elapsed = asyncio.run(run_load(url, mix, roles, seconds, seed, timeout, max_requests))
        rss_after = rss_mb(pid) if pid else None
    except BaseException:
        if process is not None:
            print(Path(log_dir.name, "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        if process is not None:
            stop_server(process)
        log_dir.cleanup()
    result = {
        "scenario": scenario, "url": url, "model": info.get("model"), "backend": info.get("backend"),
        "cache_size": cache_size if process else None, "queue_bound": info.get("limits", {}).get("max_queue_paragraphs"),
        "clients": len(roles), "roles": {role: roles.count(role) for role in sorted(set(roles))},
        "duration_s": seconds, "warmup_s": warmup, "timeout_s": timeout, "mix": {
            "source": mix.source, "paragraphs": len(mix.paragraphs), "reports": len(mix.reports),
            "paragraphs_a_request": f"1–{MAX_PARAGRAPHS_A_REQUEST}", "whole_reports": REPORT_SHARE if mix.reports else 0,
            "paragraphs_tagged_new": True},
        **summarise(load, elapsed),
        "rss_mb_loaded": round(rss_loaded, 1) if rss_loaded else None,
        "rss_mb_after_warmup": round(rss_before, 1) if rss_before else None,
        "rss_mb_after": round(rss_after, 1) if rss_after else None,
        "rss_growth": round(rss_after / rss_before - 1, 4) if rss_before and rss_after else None,
        "cores": os.cpu_count(),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, ensure_ascii=False, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model folder: start a server on it (on a free loopback port)")
    parser.add_argument("--url", default=None, help="or a running service on loopback, e.g. http://127.0.0.1:8000")
    parser.add_argument("--pid", type=int, default=None, help="with --url: the server's process id, for its memory")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5, help="seconds of the same load before measuring (default %(default)s)")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--cache-size", type=int, default=0,
                        help="CACHE_SIZE of the started server (default 0: whole reports are sent as they are, and a cache "
                             "would answer their repeats from memory; paragraphs are tagged new either way)")
    parser.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS),
                        help="which loads to run, each against a fresh server (default: all); --clients sizes `stress`")
    parser.add_argument("--backend", default=None, help="BACKEND of the started server (default: its setting, auto)")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=60, help="seconds a request may take (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench/load.json"))
    args = parser.parse_args()
    results = {scenario: run(args.model, args.clients, args.seconds, args.warmup, args.corpus, args.url, args.pid, args.cache_size,
                             args.backend, timeout=args.timeout, max_requests=args.max_requests, scenario=scenario)
               for scenario in args.scenario}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, ensure_ascii=False, indent=2))
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
