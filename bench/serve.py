"""Measure what batching concurrent requests buys: the real service over HTTP, several client
threads sending one paragraph each, with the batcher on (settings) and off (one request at a
time). Writes the figures as JSON.  usage: python -m bench.serve --model DIR --out FILE"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from bench.helpers import free_port
from renda.settings import Settings
from serving.main import create_app

PARAGRAPHS = [
    "听取审议县政府关于预算执行情况的报告，开展专题询问。",
    "新建代表联络站五个，组织代表接待群众。",
    "制定城市绿化条例，修改物业管理条例。",
    "加强机关作风建设，完善常委会议事规则。",
    "认真落实县委决策部署，严格执行请示报告制度。",
    "计划听取审议专项工作报告十二个。",
]


def run(model: Path, clients: int, seconds: float, settings: Settings) -> dict:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, model_dir=model), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:
        while True:
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            n = i
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = client.post(f"{url}/v1/classify", json={"paragraphs": [PARAGRAPHS[n % len(PARAGRAPHS)]]})
                response.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - started)
                n += 1

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    server.should_exit = True
    thread.join(timeout=10)
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 2),
        "latency_ms_p50": round(1000 * statistics.median(latencies), 1),
        "latency_ms_p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    base = Settings()
    results = []
    for clients in args.clients:
        modes = (
            ("batched, no wait (default)", base.model_copy(update={"batch_wait_ms": 0})),
            ("batched, 5 ms wait", base.model_copy(update={"batch_wait_ms": 5})),
            ("one at a time", base.model_copy(update={"max_batch_paragraphs": 1, "batch_wait_ms": 0})),
        )
        for name, settings in modes:
            figures = run(args.model, clients, args.seconds, settings) | {"mode": name}
            print(json.dumps(figures), flush=True)
            results.append(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "threads": base.threads, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
