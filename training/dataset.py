"""Corpora → a Hugging Face `datasets` DatasetDict with train / dev / test splits grouped by report."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value, load_from_disk

from model.publish import check_replaceable, staged_directory
from renda.corpus import load_corpus
from renda.labels import LABELS
from renda.records import DataError, Record, dumps_jsonl

SUMMARY_FILE = "summary.json"  # every dataset folder has it (what marks a folder as one)

SPLITS = ("train", "dev", "test")
FEATURES = Features(
    {
        "report_id": Value("string"),
        "text": Value("string"),
        "label": ClassLabel(names=LABELS),
        "heading": Value("string"),
        "heading_path": Sequence(Value("string")),
        "is_heading": Value("bool"),
        "position": Value("int32"),
    }
)


def assign_splits(records: list[Record], seed: int, dev_fraction: float, test_fraction: float,
                  test_pool: set[str] | None = None, train_only: set[str] | None = None) -> dict[str, str]:
    """report_id → split. Whole reports only; shuffled by `seed`; test, then dev, filled to their
    share of paragraphs; the rest trains. `test_pool` restricts the test split to those reports
    (for instance real reports only); reports in `train_only` always train (corrections, which
    are there to be learnt). Deterministic for a seed and a corpus."""
    sizes = Counter(r.report_id for r in records)
    if len(sizes) < 3:
        raise DataError("corpus", f"need at least 3 reports to split by report, found {len(sizes)}")
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    total = sum(sizes.values())
    split_of: dict[str, str] = {}
    filled: Counter = Counter()
    for split, share, pool in (("test", test_fraction, test_pool), ("dev", dev_fraction, None)):
        for report in order:
            if filled[split] >= share * total:
                break
            if report not in split_of and (pool is None or report in pool) and report not in (train_only or ()):
                split_of[report] = split
                filled[split] += sizes[report]
    for report in order:
        split_of.setdefault(report, "train")
    if "train" not in split_of.values():
        raise DataError("corpus", "too few reports: nothing left to train on")
    return split_of


def build_dataset(corpus: list[str | Path], out_dir: Path, seed: int, dev_fraction: float, test_fraction: float,
                  test_from: list[str | Path] | None = None, train_from: list[str | Path] | None = None) -> dict:
    """Build and write the dataset folder (atomically); returns its summary."""
    check_replaceable(out_dir, (SUMMARY_FILE,))  # before any work: publishing would remove what is there
    loaded = load_corpus(corpus)
    pool = {r.report_id for r in load_corpus(test_from).records} if test_from else None
    train_only = {r.report_id for r in load_corpus(train_from).records} if train_from else None
    split_of = assign_splits(loaded.records, seed, dev_fraction, test_fraction, pool, train_only)
    rows = {s: [] for s in SPLITS}
    for r in loaded.records:
        rows[split_of[r.report_id]].append(
            {"report_id": r.report_id, "text": r.text, "label": r.label, "heading": r.heading or "",
             "heading_path": r.heading_path or [], "is_heading": r.is_heading, "position": -1 if r.position is None else r.position}
        )
    summary = {
        "corpus": [str(c) for c in corpus],
        "sources": loaded.sources,
        "seed": seed,
        "test_from": [str(c) for c in test_from or []],
        "train_from": [str(c) for c in train_from or []],
        "splits": {s: {"paragraphs": len(rows[s]), "reports": sorted({x["report_id"] for x in rows[s]}),
                       "labels": dict(Counter(x["label"] for x in rows[s]))} for s in SPLITS},
        "unlabelled": len(loaded.unlabelled),
    }
    with staged_directory(out_dir, (SUMMARY_FILE,)) as staging:
        DatasetDict({s: Dataset.from_list(rows[s], features=FEATURES) for s in SPLITS}).save_to_disk(str(staging / "hf"))
        for s in SPLITS:
            (staging / f"{s}.jsonl").write_text(dumps_jsonl(rows[s]), encoding="utf-8")
        (staging / "unlabelled.jsonl").write_text(dumps_jsonl(r.model_dump() for r in loaded.unlabelled), encoding="utf-8")
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    return summary


def row_weights(records: list[Record], starter_weight: float) -> list[float]:
    """Per-row training weights: paragraphs of the project's starter corpus (fictional reports,
    matched by report id) weigh `starter_weight`, real ones 1, so real reports can count more."""
    from renda.settings import get_settings

    starter = {p.stem for p in get_settings().starter_dir.glob("*.txt")}
    return [starter_weight if r.report_id in starter else 1.0 for r in records]


def load_split(dataset_dir: Path, split: str) -> list[Record]:
    """One split of the built `datasets` dataset, as records in the project's one format."""
    if not (Path(dataset_dir) / "hf").is_dir():
        raise DataError(dataset_dir, "no dataset here; run `make data` first")
    data = load_hf(dataset_dir)[split]
    names = data.features["label"].names
    return [Record(**{**row, "label": names[row["label"]]}) for row in data]


def load_hf(dataset_dir: Path) -> DatasetDict:
    return load_from_disk(str(Path(dataset_dir) / "hf"))
