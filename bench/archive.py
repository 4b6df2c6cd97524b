"""How much the archive pipeline costs over the model alone (`make bench-archive`).

On one archive: the model alone (every paragraph, parsed beforehand, in one `predict` call: the
best a batch can do), then the local engine, then the Ray engine when Ray is installed, each as
paragraphs/s. The Ray figure leaves out Ray's start-up (a fixed cost, tens of seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from apps.archive import archive_files, label_archive, parse_file
from renda.records import atomic_write_text


def bench(archive: Path, model_dir: Path, threads: int, ray_actors: int) -> dict:
    from model.loading import load_predictor

    def fresh():  # a new predictor each time: none reads another's cache of recent paragraphs
        return load_predictor(model_dir, threads=threads or None)

    predictor = fresh()
    items = [item for rel in archive_files(archive) for item in parse_file(archive, rel) if hasattr(item, "texts")]
    texts, paths = [t for r in items for t in r.texts], [p for r in items for p in r.paths]
    predictor.predict(["预热一下模型。"] * 8)  # warm-up, on text not in the archive
    start = time.perf_counter()
    predictor.predict(texts, paths)
    figures = {"archive": str(archive), "model": str(model_dir), "reports": len(items), "paragraphs": len(texts),
               "model_alone": round(len(texts) / (time.perf_counter() - start), 1)}
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:
        figures["local_engine"] = label_archive(archive, work / "local", fresh(), progress=False)["paragraphs_per_second"]
        try:
            from apps.archive_ray import PARSE_CPUS, label_archive_ray
        except ImportError:
            figures["ray_engine"] = None
        else:
            # One machine's worth: the actors share the cores the local engine had, less a parse task's.
            cores = threads or os.cpu_count()
            figures["ray_engine"] = label_archive_ray(archive, work / "ray", model_dir, actors=ray_actors, num_cpus=os.cpu_count(),
                                                      actor_cpus=max(0.75, cores / ray_actors - PARSE_CPUS),
                                                      progress=False)["paragraphs_per_second"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archive", type=Path, default=Path("data/starter"))
    parser.add_argument("--model", type=Path, default=Path("models/bert"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads, 0 = all cores")
    parser.add_argument("--ray-actors", type=int, default=1, help="actors of the Ray engine (default 1: one machine's worth)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench/archive.json"))
    args = parser.parse_args()
    figures = bench(args.archive, args.model, args.threads, args.ray_actors)
    atomic_write_text(args.out, json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
