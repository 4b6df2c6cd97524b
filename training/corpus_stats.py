"""Counts of a corpus per label and per level (levels from a `reports.tsv` index if present)."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

from renda.corpus import load_corpus
from renda.labels import LABELS


def corpus_stats(paths: list[str]) -> str:
    corpus = load_corpus(paths)
    levels: dict[str, str] = {}
    for path in paths:
        index = Path(path) / "reports.tsv"
        if index.is_file():
            for row in csv.DictReader(index.open(encoding="utf-8"), delimiter="\t"):
                levels[Path(row["file"]).stem] = row["level"]
    by_level: dict[str, Counter] = defaultdict(Counter)
    reports: dict[str, set] = defaultdict(set)
    for r in corpus.records:
        level = levels.get(r.report_id, "unknown")
        by_level[level][r.label] += 1
        reports[level].add(r.report_id)
    order = [l for l in ("national", "provincial", "city", "county", "unknown") if l in by_level]
    lines = ["| level | reports | paragraphs | " + " | ".join(LABELS) + " |", "|---" * (3 + len(LABELS)) + "|"]
    total = Counter()
    for level in order:
        counts = by_level[level]
        total.update(counts)
        lines.append(f"| {level} | {len(reports[level])} | {sum(counts.values())} | " + " | ".join(str(counts[l]) for l in LABELS) + " |")
    lines.append(f"| **all** | {sum(len(v) for v in reports.values())} | {sum(total.values())} | "
                 + " | ".join(f"**{total[l]}**" for l in LABELS) + " |")
    if corpus.unlabelled:
        lines.append(f"\n{len(corpus.unlabelled)} paragraphs left unlabelled (section not mapped).")
    return "\n".join(lines)
