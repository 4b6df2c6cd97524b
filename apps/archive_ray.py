"""`renda label-archive --engine ray`: the local engine's work (apps/archive.py) on Ray Data.

- The files to do are a dataset (one row per file, with the reports already labelled in it).
- Each file is read and parsed in a Ray task; a bad file becomes its `failed` row there. (Ray's own
  file readers stop the whole run on one unreadable file, so the task reads the file itself.)
- A pool of actors labels batches of parsed files: each actor loads the model once, with
  ARCHIVE_ACTOR_CPUS / ARCHIVE_ACTOR_GPUS reserved, and writes each batch it labels as one
  Parquet part of each table, the same way the local engine commits a batch. So both engines
  resume each other's runs, and the tables are the same.
- The driver only skips what is done, and draws the progress bar from each batch's counts.

On a cluster, every node needs this project installed (the same environment as the driver), and
the archive, OUT and the model folder on a path all nodes see (a shared file system).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

from apps.archive import (Progress, archive_files, batch_counts, commit_batch, label_batch, open_archive,
                           parse_file, pending_files)
from renda.records import DataError

# CPUs a parse task asks for: parsing is light, and a share unlike the actors' also keeps Ray from
# fusing the parse tasks into the actors (parsing would then wait on the model).
PARSE_CPUS = 0.25


def parse_row(row: dict, root: str) -> dict:
    """A Ray task: one file read and parsed into its reports (or its failure). Pickled, because
    a parsed report is Python objects; only this pipeline's own workers ever unpickle it."""
    items = parse_file(Path(root), row["path"], set(json.loads(row["skip"])))
    return {"path": row["path"], "items": pickle.dumps(items)}


class LabelWriter:
    """A Ray actor: the model, loaded once; each call labels a batch of parsed files and commits it."""

    def __init__(self, model_dir: str, out: str, threads: int):
        from model.loading import load_predictor

        self.predictor = load_predictor(model_dir, threads=threads)
        self.out = Path(out)

    def __call__(self, batch: dict) -> dict:
        items = [item for blob in batch["items"] for item in pickle.loads(blob)]
        tables = label_batch(self.predictor, items)
        commit_batch(self.out, tables)
        reports, paragraphs, failed = batch_counts(tables)
        return {"files": [len(batch["items"])], "reports": [reports], "paragraphs": [paragraphs], "failed": [failed]}


def pool_size(actors: int, actor_cpus: float, actor_gpus: float, fixed: bool) -> int:
    """The actors asked for; else one per GPU, or as many as the cluster's CPUs hold with room
    left for a parse task. Actors holding every CPU would starve the parse tasks, and Ray would
    wait forever: on a Ray started here (`fixed`: no autoscaler to add nodes) that is refused."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    if not actors:
        actors = max(1, int(ray.cluster_resources().get("GPU", 0) // actor_gpus)) if actor_gpus \
            else max(1, math.floor((cpus - PARSE_CPUS) / actor_cpus))
    if fixed and actors * actor_cpus + PARSE_CPUS > cpus:
        raise DataError("--actors/--actor-cpus", f"{actors} actors of {actor_cpus} CPUs leave no CPU for parsing on {cpus:g} CPUs: "
                         f"lower --actors or --actor-cpus (e.g. --actor-cpus {cpus - PARSE_CPUS:g} for one actor)")
    return actors


def label_archive_ray(root: Path | str, out: Path | str, model_dir: Path | str, batch_files: int = 16,
                      actors: int = 0, actor_cpus: float = 1.0, actor_gpus: float = 0.0, address: str | None = None,
                      num_cpus: int | None = None, progress: bool = True) -> dict:
    """Label every report under `root` into `out` on Ray: joins the cluster at `address`, else
    starts Ray here (with `num_cpus`, default all cores) and stops it at the end."""
    import ray
    import ray.data

    from model.predictor import read_meta

    root, out = Path(root).resolve(), Path(out).resolve()
    meta = read_meta(model_dir)
    total = len(archive_files(root))  # a missing DIR stops here, before OUT is made
    with open_archive(out, meta.get("model_id", meta["kind"]), str(model_dir)):
        todo = pending_files(root, out)
        bar = None
        if todo:
            started = not ray.is_initialized()
            if started:
                ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                         logging_level="WARNING")
            try:
                context = ray.data.DataContext.get_current()
                context.enable_progress_bars = False  # ours counts reports and paragraphs
                context.print_on_execution_start = False
                size = pool_size(actors, actor_cpus, actor_gpus, fixed=started and not (address or os.environ.get("RAY_ADDRESS")))
                files = ray.data.from_items([{"path": rel, "skip": json.dumps(sorted(skip))} for rel, skip in todo])
                parsed = files.map(parse_row, fn_kwargs={"root": str(root)}, num_cpus=PARSE_CPUS)
                counts = parsed.map_batches(
                    LabelWriter, fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()), "out": str(out),
                                                        "threads": math.ceil(actor_cpus)},
                    batch_size=batch_files, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=size),
                    num_cpus=actor_cpus, num_gpus=actor_gpus)
                bar = Progress(len(todo), progress)  # after Ray has started: the rates are the labelling's
                for row in counts.iter_rows():
                    bar.update(int(row["files"]), int(row["reports"]), int(row["paragraphs"]), int(row["failed"]))
            finally:
                if started:
                    ray.shutdown()
        return (bar or Progress(0, False)).close(total - len(todo))
