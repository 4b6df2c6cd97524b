"""Score models on held-out reports: metrics.json, a printed table, a confusion-matrix PNG and the
wrong predictions worst first; several models side by side; grouped cross-validation (or leave-one-report-out) of a recipe."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from model.calibration import prediction_ece
from model.predictor import Prediction, Predictor
from renda.labels import LABELS
from renda.records import DataError, Record, atomic_write, atomic_write_text, dumps_jsonl
from model.metrics import macro_f1


@dataclass
class Evaluation:
    name: str
    metrics: dict
    confusion: list[list[int]]
    errors: list[dict]


def score(name: str, records: list[Record], predictions: list[Prediction], labels: list[str] = LABELS) -> Evaluation:
    gold = [r.label for r in records]
    pred = [p.label for p in predictions]
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    metrics = {
        "model": name,
        "paragraphs": len(records),
        "reports": len({r.report_id for r in records}),
        "accuracy": round(float(accuracy_score(gold, pred)), 4),
        "macro_f1": round(macro_f1(gold, pred), 4),
        "per_label": {
            label: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "windows": int(sum(p.windows for p in predictions)),
        "ece": round(prediction_ece(predictions, gold), 4),  # does a score of 0.9 mean right 9 times in 10?
    }
    errors = [
        {"report_id": r.report_id, "heading_path": r.heading_path or [], "text": r.text, "label": r.label, "predicted": p.label,
         "confidence": round(p.score, 4), "gold_score": round(p.scores.get(r.label, 0.0), 4)}
        for r, p in zip(records, predictions) if r.label != p.label
    ]
    errors.sort(key=lambda e: -e["confidence"])  # confidently wrong first
    matrix = confusion_matrix(gold, pred, labels=labels).tolist()
    return Evaluation(name, metrics, matrix, errors)


# The three ways a paragraph is labelled: alone, with its heading path, and in its whole report.
MODES = ("alone", "path", "report")


def predict_records(predictor: Predictor, records: list[Record], context: bool = True) -> list[Prediction]:
    """Each record's prediction, with its heading path as context (or without)."""
    texts = [r.text for r in records]
    return predictor.predict(texts, [r.heading_path or [] for r in records] if context else None)


def evaluate_predictor(name: str, predictor: Predictor, records: list[Record], context: bool = True) -> Evaluation:
    return score(name, records, predict_records(predictor, records, context))


def whole_report(records: list[Record], predictions: list[Prediction], labels: list[str], combiner) -> list[Prediction]:
    """Whole-report mode on records (each report's rows consecutive, in order): every row takes
    its unit's combined label (as `section_label` in POST /v1/reports)."""
    from model.reports import combine, record_units

    section, _ = combine(record_units(records), predictions, labels, combiner)
    return [Prediction(s or p.label, p.scores[s or p.label], p.scores, p.windows, p.context) for p, s in zip(predictions, section)]


def fit_report_combiner(predictor: Predictor, records: list[Record], fitted_on: str):
    """The whole-report weights that do best on `records` (dev data: never the test split)."""
    from model.reports import Combiner, fit_combiner, record_units

    if not records:
        return Combiner()
    return fit_combiner(record_units(records), predict_records(predictor, records), [r.label for r in records],
                        predictor.labels, fitted_on=fitted_on)


def predict_modes(predictor: Predictor, records: list[Record]) -> dict[str, list[Prediction]]:
    """Predictions in every mode; whole-report mode with the combiner saved with the model."""
    from model.reports import Combiner

    path = predict_records(predictor, records)
    report = whole_report(records, path, predictor.labels, Combiner.from_meta(predictor.info))
    return {"alone": predict_records(predictor, records, context=False), "path": path, "report": report}


def held_out_metrics(predictor, test: list[Record]) -> dict:
    """The test split in the three modes: the paragraph with its heading path (the headline
    figure), alone, and in its whole report."""
    if not test:
        return {}
    modes = {mode: score(mode, test, predictions).metrics for mode, predictions in predict_modes(predictor, test).items()}
    return {**modes["path"], "alone": modes["alone"], "report": modes["report"]}


def report_folds(records: list[Record], k: int, seed: int) -> list[list[str]]:
    """`k` groups of whole reports with about equal paragraph counts: reports shuffled by `seed`,
    then each (largest first) to the fold with the fewest paragraphs. Deterministic."""
    sizes = Counter(r.report_id for r in records)
    if not 2 <= k <= len(sizes):
        raise DataError("folds", f"need 2 to {len(sizes)} folds (one report at least in each), got {k}")
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    folds: list[list[str]] = [[] for _ in range(k)]
    filled = [0] * k
    for report in sorted(order, key=lambda r: -sizes[r]):  # stable: ties keep the shuffled order
        smallest = filled.index(min(filled))
        folds[smallest].append(report)
        filled[smallest] += sizes[report]
    return folds


@dataclass
class CrossValidated:
    """Every record predicted once in each mode, by a model trained without its report;
    records kept in corpus order within each report (so whole-report mode can read them).
    `fold_info`: what each fold's model says of its training (epochs, minutes, fitted weights)."""
    records: list[Record]
    predictions: dict[str, list[Prediction]]
    fold_of: list[int]
    fold_info: list[dict] = field(default_factory=list)

    def evaluation(self, name: str, mode: str) -> Evaluation:
        """Scored over all records pooled, with each fold's macro-F1 alongside (the spread)."""
        predictions = self.predictions[mode]
        evaluation = score(name, self.records, predictions)
        per_fold = []
        for fold in sorted(set(self.fold_of)):
            members = [i for i, f in enumerate(self.fold_of) if f == fold]
            per_fold.append(score(name, [self.records[i] for i in members], [predictions[i] for i in members]).metrics["macro_f1"])
        evaluation.metrics.update(fold_macro_f1=per_fold, fold_macro_f1_mean=round(float(np.mean(per_fold)), 4),
                                  fold_macro_f1_sd=round(float(np.std(per_fold)), 4), folds=self.fold_info)
        return evaluation

    def scores_rows(self) -> list[dict]:
        """Each paragraph's out-of-fold probabilities alone and with its path, and its whole-report
        label (that mode's probabilities are the path's: the label comes from the report's other
        rows), with no text: where it sits in its report, its fold and gold label. For what is
        fitted after the run (ensembles, calibration)."""
        seen: Counter = Counter()
        rows = []
        for i, record in enumerate(self.records):
            rows.append({"report_id": record.report_id, "index": seen[record.report_id], "fold": self.fold_of[i],
                         "label": record.label, "alone": self.predictions["alone"][i].scores,
                         "path": self.predictions["path"][i].scores, "report_label": self.predictions["report"][i].label})
            seen[record.report_id] += 1
        return rows


# What a fold's model reports of its own training, kept beside the cross-validation's figures.
FOLD_INFO = ("epochs_run", "best_epoch", "fine_tune_minutes", "temperature", "temperature_alone", "judge_temperature",
             "weight", "weight_alone")


def cross_validate_many(records: list[Record], fit: Callable[[list[Record]], dict[str, Predictor]], folds: list[list[str]],
                        progress: Callable | None = None) -> dict[str, CrossValidated]:
    """For each fold: train on the other folds' reports, then predict this fold's in every mode,
    with each of the models `fit` returns (by name: recipes that share a fold's work)."""
    results: dict[str, CrossValidated] = {}
    for number, fold in enumerate(progress(folds) if progress else folds):
        held_out = set(fold)
        held = [r for r in records if r.report_id in held_out]
        for name, model in fit([r for r in records if r.report_id not in held_out]).items():
            result = results.setdefault(name, CrossValidated([], {mode: [] for mode in MODES}, []))
            for mode, predictions in predict_modes(model, held).items():
                result.predictions[mode] += predictions
            result.records += held
            result.fold_of += [number] * len(held)
            info = getattr(model, "info", None) or {}
            result.fold_info.append({key: info[key] for key in FOLD_INFO if key in info})
    return results


def cross_validate(records: list[Record], fit: Callable[[list[Record]], Predictor], folds: list[list[str]],
                   progress: Callable | None = None) -> CrossValidated:
    """For each fold: train on the other folds' reports, predict this fold's in every mode."""
    return cross_validate_many(records, lambda rest: {"": fit(rest)}, folds, progress)[""]


def leave_one_report_out(
    name: str, records: list[Record], fit: Callable[[list[Record]], Predictor], progress: Callable | None = None
) -> list[Evaluation]:
    """Train on every report but one, predict that one; repeat for each report."""
    folds = [[report] for report in sorted({r.report_id for r in records})]
    result = cross_validate(records, fit, folds, progress)
    return [score(f"{name}-{mode}", result.records, result.predictions[mode]) for mode in MODES]


def format_table(evaluations: list[Evaluation]) -> str:
    """Per-label F1 and the summary figures, one column per model."""
    names = [e.name for e in evaluations]
    width = max(13, *(len(n) for n in names))
    head = "| label".ljust(16) + "| support | " + " | ".join(n.ljust(width) for n in names) + " |"
    rule = "|" + "-" * 15 + "|---------|" + "|".join("-" * (width + 2) for _ in names) + "|"
    lines = [head, rule]
    first = evaluations[0].metrics
    for label in LABELS:
        cells = [f"{e.metrics['per_label'][label]['f1']:.3f}".ljust(width) for e in evaluations]
        lines.append(f"| {label}".ljust(16) + f"| {first['per_label'][label]['support']:>7} | " + " | ".join(cells) + " |")
    for key in ("macro_f1", "accuracy"):
        cells = [f"{e.metrics[key]:.3f}".ljust(width) for e in evaluations]
        lines.append(f"| **{key}**".ljust(16) + f"| {first['paragraphs']:>7} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_confusion(evaluation: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(evaluation.confusion)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold (report's own section)")
    ax.set_title(f"{evaluation.name}: macro-F1 {evaluation.metrics['macro_f1']:.3f}")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def write_evaluations(evaluations: list[Evaluation], out_dir: Path, data: list[str]) -> str:
    """metrics.json (all models), one folder per model with confusion.png and errors.jsonl,
    and comparison.md with the side-by-side table. Returns the table."""
    out_dir = Path(out_dir)
    for e in evaluations:
        folder = out_dir / e.name
        draw_confusion(e, folder / "confusion.png")
        atomic_write_text(folder / "errors.jsonl", dumps_jsonl(e.errors))
        atomic_write_text(folder / "metrics.json", json.dumps({**e.metrics, "confusion": e.confusion, "labels": LABELS}, ensure_ascii=False, indent=2))
    table = format_table(evaluations)
    summary = {"data": data, "models": {e.name: e.metrics for e in evaluations}}
    atomic_write_text(out_dir / "metrics.json", json.dumps(summary, ensure_ascii=False, indent=2))
    atomic_write_text(out_dir / "comparison.md", f"Data: {', '.join(data)}\n\n{table}\n")
    return table
