"""The pipeline steps, one function each: data → baseline / base model → train → eval.

The Makefile and the `renda` CLI both call these (one implementation, two entry points).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from model.baseline import BaselinePredictor
from training.recipes import fit_baseline, fuse, judge, shared_settings  # noqa: F401 (the pipeline's names too)
from model import baseline as model_baseline
from model import plans_judge as model_plans_judge
from model.predictor import META_FILE, read_meta
from model.loading import load_predictor
from model.publish import check_replaceable, staged_directory
from renda.corpus import label_records, load_corpus, report_runs
from renda.labels import LABELS
from renda.records import DataError, Record, atomic_write_text, dumps_jsonl, iter_json_objects, read_jsonl
from training.dataset import SUMMARY_FILE, assign_splits, build_dataset, load_split
from training.evaluate import (
    MODES, Evaluation, cross_validate_many, fit_report_combiner, held_out_metrics, leave_one_report_out, predict_modes,
    report_folds, score, write_evaluations,
)


def run_data(corpus: list[str], out: Path, seed: int, dev_fraction: float, test_fraction: float,
             test_from: list[str] | None = None, train_from: list[str] | None = None) -> dict:
    summary = build_dataset(corpus, out, seed, dev_fraction, test_fraction, test_from, train_from)
    for split, info in summary["splits"].items():
        print(f"{split:>5}: {info['paragraphs']:4d} paragraphs, {len(info['reports']):3d} reports  {info['labels']}")
    if summary["unlabelled"]:
        print(f"{summary['unlabelled']} paragraphs left unlabelled (section not mapped): {out / 'unlabelled.jsonl'}")
    print(f"dataset written to {out}")
    return summary


def fingerprint(dataset: Path, *parts: object) -> str:
    """What a model was trained from: the dataset's split files and the recipe's settings."""
    digest = hashlib.sha256()
    for split in ("train", "dev", "test"):
        digest.update((Path(dataset) / f"{split}.jsonl").read_bytes())
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


# The files a folder of each kind cannot load without (besides renda_model.json)
NEEDED_FILES = {"baseline": ("vocabulary.json", "weights.npz"),
                "model": ("config.json", "model.safetensors", "tokenizer.json", "training_config.json")}


def is_current(model_dir: Path, print_name: str, expected: str) -> bool:
    """True (and says so) when `model_dir` was trained from exactly this dataset and recipe and its
    files are all there; a folder broken since (a file missing, its metadata unreadable) is retrained."""
    try:
        meta = read_meta(model_dir)  # a JSON object, or an error saying what is wrong
    except (OSError, ValueError):
        return False
    judge = meta.get("plans_judge")
    needed = [*NEEDED_FILES[print_name], *([f"{judge['model']}/{META_FILE}"] if isinstance(judge, dict) and judge.get("model") else [])]
    if meta.get("fingerprint") == expected and all((Path(model_dir) / name).is_file() for name in needed):
        print(f"{print_name} in {model_dir} is up to date (same data and settings); skipped")
        return True
    return False


def run_baseline(dataset: Path, out: Path, seed: int, if_stale: bool = False) -> dict:
    config = shared_settings()
    stamp = fingerprint(dataset, "baseline", seed, config.ngram_context_dropout, config.starter_weight, Path(model_baseline.__file__).read_bytes())
    if if_stale and is_current(out, "baseline", stamp):
        return {}
    started = time.monotonic()
    train, dev, test = (load_split(dataset, s) for s in ("train", "dev", "test"))
    model = fit_baseline(train, seed, {"dataset": str(dataset), "base_model": "none (TF-IDF char 1-3 grams + logistic regression)"},
                         dev, config)
    metrics = held_out_metrics(model, test)
    model.info.update(test_metrics=metrics, train_seconds=round(time.monotonic() - started, 2), fingerprint=stamp)
    with staged_directory(out, (META_FILE,)) as staging:
        model.save(staging)
    print(f"baseline trained on {len(train)} paragraphs in {model.info['train_seconds']} s; "
          f"held-out macro-F1 {metrics.get('macro_f1', float('nan')):.3f}, accuracy {metrics.get('accuracy', float('nan')):.3f} -> {out}")
    return metrics


def run_train(dataset: Path, out: Path, base_model: str, config_path: Path | None = None, threads: int = 0,
              if_stale: bool = False, export: bool = False, export_data: list[str] | None = None, **overrides) -> dict:
    """Fine-tune and publish to `out` (skipped with `if_stale` when `out` holds this very model).
    `export`: its ONNX copies made and checked (on `export_data`, else its dev split) before it is
    published, so no server starts on the new model before its export is there."""
    from training.config import CONFIG_FILE, load_config
    from training.train import train_bert

    config = load_config(config_path or CONFIG_FILE, **overrides)
    base = config.base_model or base_model
    # the judge's code too: it is fitted at training time, and a changed judge is a changed model
    judge = [Path(model_plans_judge.__file__).read_bytes(), Path(model_baseline.__file__).read_bytes()] if config.plans_judge else []
    stamp = fingerprint(dataset, "bert", config.model_dump(), base, *judge)
    if if_stale and is_current(out, "model", stamp):
        return {}
    summary = json.loads((Path(dataset) / SUMMARY_FILE).read_text(encoding="utf-8"))

    def build(folder: Path) -> dict:
        return train_bert(Path(dataset), folder, base, config, threads=threads, data_summary=summary, fingerprint=stamp)

    metrics = publish_staged(Path(out), build, export, export_data, threads) if export else build(Path(out))
    print(f"model written to {out}; held-out macro-F1 {metrics.get('macro_f1', float('nan')):.3f}")
    return metrics


def publish_staged(out: Path, build: Callable[[Path], dict], export: bool, export_data: list[str] | None = None,
                   threads: int = 0) -> dict:
    """`build(folder)` trains into a staging folder named as `out` (the model id takes the folder's
    name), its ONNX export is made and checked there when `export`, and `out` is replaced only when
    all of it finished: a run that fails or is stopped at any point leaves `out` as it was."""
    check_replaceable(out, (META_FILE,))
    with staged_directory(out, (META_FILE,)) as staging:
        trained = staging / Path(out).name
        metrics = build(trained)
        if export:
            from training.export import run_export

            run_export(trained, export_data, threads)
        for item in trained.iterdir():  # the staging folder becomes the model folder
            item.rename(staging / item.name)
        trained.rmdir()
    return metrics


def run_retrain(corpus: list[str], corrections: Path, out: Path, base_model: str, build_dir: Path, seed: int = 13,
                threads: int = 0, export: bool = True, **overrides) -> dict:
    """`make train CORPUS="<corpus> <corrections>"` in one call (what "retrain on corrections" runs):
    a dataset of the corpus plus the corrections folder (whose reports always train), the encoder
    fine-tuned and its ONNX export checked in a staging folder, and `out` replaced only when both
    finished: a retrain that fails or is stopped at any point leaves the served model as it was."""
    from renda.settings import get_settings

    settings = get_settings()
    check_replaceable(out, (META_FILE,))
    sources = [*corpus, str(corrections)] if Path(corrections).is_dir() and any(Path(corrections).glob("*.jsonl")) else list(corpus)
    dataset = Path(build_dir) / f"retrain-{fingerprint_of(sources, seed)}"
    run_data(sources, dataset, seed, settings.dev_fraction, settings.test_fraction,
             train_from=[str(corrections)] if str(corrections) in sources else None)
    metrics = publish_staged(Path(out), lambda folder: run_train(dataset, folder, base_model, threads=threads, **overrides),
                             export, None, threads)
    print(f"retrained model published to {out}")
    return metrics


def fingerprint_of(sources: list[str], seed: int) -> str:
    return hashlib.md5("|".join([*sources, str(seed)]).encode()).hexdigest()[:8]


def eval_records(data: list[str]) -> list[Record]:
    """A dataset folder (its test split: held-out reports), or report folders / labelled JSONL."""
    if len(data) == 1 and (Path(data[0]) / SUMMARY_FILE).is_file():
        return load_split(Path(data[0]), "test")
    return load_corpus(data).records


def run_eval(models: list[Path], data: list[str], out: Path, loro: list[str] | None = None, seed: int = 13) -> list[Evaluation]:
    """Score each model on the same records, side by side, in the three modes (alone, with the
    heading path, whole report); optionally leave-one-report-out of the baseline recipe."""
    records = eval_records(data)
    if not records:
        raise DataError(", ".join(data), "nothing to evaluate on")
    evaluations = []
    for model_dir in models:
        predictor = load_predictor(model_dir)
        name = Path(model_dir).name
        print(f"scoring {name} on {len(records)} paragraphs of {len({r.report_id for r in records})} reports…", flush=True)
        for mode, predictions in predict_modes(predictor, records).items():
            evaluations.append(score(f"{name}-{mode}", records, predictions))
    if loro:
        corpus = load_corpus(loro).records
        evaluations += leave_one_report_out("baseline-loro", corpus, lambda rest: fit_baseline(rest, seed),
                                            progress=lambda xs: tqdm(xs, desc="leave-one-report-out"))
    table = write_evaluations(evaluations, out, data + ([f"leave-one-report-out over {' '.join(loro)}"] if loro else []))
    print(table)
    print(f"metrics, confusion matrices and errors (worst first) in {out}")
    return evaluations


def fit_bert(train: list[Record], dev: list[Record], base_model: str, config, bottom=None):
    """The `make train` recipe on in-memory records; returns a predictor, writes nothing. `bottom`:
    frozen-bottom outputs shared by every fold (the same frozen weights read the same windows)."""
    from model.calibration import calibrated
    from training.train import fine_tune, fit_dev_temperatures

    tuned = fine_tune(train, dev, base_model, config, progress=False, bottom=bottom)
    raw = tuned.predictor({"kind": "bert", "labels": LABELS, "model_id": "bert-fold", "epochs_run": len(tuned.log),
                           "best_epoch": tuned.best_epoch, "fine_tune_minutes": tuned.minutes}, config)
    raw.info.update(fit_dev_temperatures(raw, dev))  # as `make train` serves it: calibrated per mode
    predictor = calibrated(raw)
    if config.plans_judge:  # and its paragraphs read alone judged plans-or-not
        predictor = judge(predictor, train, dev, config)
        predictor.info["judge_temperature"] = predictor.temperature
    predictor.info["combiner"] = fit_report_combiner(predictor, dev, "dev").to_dict()
    return predictor


RECIPES = ("baseline", "bert", "fused")


def variant_name(variant: dict) -> str:
    """`bert` for the config as it is, else the settings a variant changes: bert-freeze_layers=8-epochs=6."""
    return "-".join(["bert", *(f"{k}={v}" for k, v in variant.items())])


def fold_partition(rest: list[Record], extra: list[Record], seed: int, dev_fraction: float,
                   train_share: float = 1.0) -> tuple[list[Record], list[Record]]:
    """A fold's (train, dev), as `make data` splits: dev reports (for early stopping and the fitted
    weights) drawn from the fold's own training reports, `extra` (the starter corpus) added to train.
    `train_share` < 1 keeps that share of the fold's training reports (not of `extra`, and the same
    dev), drawn by `seed` so that a smaller share's reports are among a larger one's: a learning curve."""
    if not 0.0 < train_share <= 1.0:
        raise DataError("train_share", f"must be above 0 and at most 1, got {train_share}")
    split_of = assign_splits(rest, seed, dev_fraction, 0.0)
    training = sorted({r.report_id for r in rest if split_of[r.report_id] == "train"})
    random.Random(seed).shuffle(training)
    kept = set(training[:max(1, round(train_share * len(training)))])
    return [r for r in rest if r.report_id in kept] + extra, [r for r in rest if split_of[r.report_id] == "dev"]


def run_crossval(corpus: list[str], out: Path, folds: int, models: list[str], seed: int = 13,
                 extra_train: list[str] | None = None, base_model: str = "",
                 config_path: Path | None = None, threads: int = 0, dev_fraction: float = 0.15,
                 variants: list[dict] | None = None, train_share: float = 1.0, **overrides) -> list[Evaluation]:
    """Grouped k-fold cross-validation over `corpus`'s reports: each recipe (baseline, bert, and
    fused: their probabilities averaged) is trained k times on the same folds and the same training
    paragraphs, and every paragraph is predicted once by a model that never saw its report, in the
    three modes. `extra_train` corpora are added to every fold's training data, never scored. Each
    fold's whole-report weights, temperatures and fusion weights are fitted on its own dev reports
    (drawn from its training reports). `train_share` < 1 trains each fold on that share of its
    training reports (`fold_partition`; the starter corpus whole): how the figures grow with data.

    `variants`: settings to try on top of the config, each cross-validated as its own bert (and
    fused) recipe on the same folds, in one run: a fold's baseline is fitted once for all, and
    variants with the same frozen bottom share its cached outputs (the search this makes cheap)."""
    from model.bert import set_threads
    from training.config import CONFIG_FILE, load_config
    from training.train import bottom_cache_for

    set_threads(threads)
    unknown = set(models) - set(RECIPES)
    if unknown:
        raise DataError("models", f"unknown recipe {', '.join(sorted(unknown))}; choose from {', '.join(RECIPES)}")
    records = load_corpus(corpus).records
    extra = load_corpus(extra_train).records if extra_train else []
    shared = {r.report_id for r in records} & {r.report_id for r in extra}
    if shared:
        raise DataError(", ".join(extra_train or []), f"reports also in the cross-validated corpus: {', '.join(sorted(shared))}")
    groups = report_folds(records, folds, seed)
    config = load_config(config_path or CONFIG_FILE, seed=seed, **overrides)
    # a variant may set its own training seed (a seed ensemble): the folds and dev splits keep the run's
    configs = {variant_name(v): load_config(config_path or CONFIG_FILE, **{"seed": seed, **overrides, **v}) for v in variants or [{}]}
    caches: dict[tuple, object] = {}  # (frozen layers, base model) → the frozen-bottom outputs every fold reads (or None)
    baselines: dict[frozenset, BaselinePredictor] = {}  # a fold's baseline, fitted once for every variant

    def partition(rest: list[Record]) -> tuple[list[Record], list[Record]]:
        return fold_partition(rest, extra, seed, dev_fraction, train_share)

    def baseline(rest: list[Record]) -> BaselinePredictor:
        key = frozenset(r.report_id for r in rest)
        if key not in baselines:
            train, dev = partition(rest)
            baselines[key] = fit_baseline(train, seed, dev=dev, config=config)
        return baselines[key]

    def fold_models(rest: list[Record], name: str, variant) -> dict:
        fitted = {"baseline": baseline(rest)} if "baseline" in models else {}
        if "bert" in models or "fused" in models:
            train, dev = partition(rest)
            base = variant.base_model or base_model
            key = (variant.freeze_layers, base)
            if key not in caches:
                caches[key] = bottom_cache_for(base, variant)  # None when nothing is frozen
            encoder = fit_bert(train, dev, base, variant, caches[key])
            if "bert" in models:
                fitted[name] = encoder
            if "fused" in models:
                fused = fitted[name.replace("bert", "fused", 1)] = fuse(encoder, baseline(rest), dev)
                fused.info["combiner"] = fit_report_combiner(fused, dev, "dev").to_dict()  # its own whole-report weights
        return fitted

    described = [f"{folds}-fold cross-validation by report over {' '.join(corpus)}"
                 + (f", each fold trained on {train_share:.0%} of its training reports" if train_share < 1 else "")
                 + (f", {' '.join(extra_train)} added to every fold's training data" if extra_train else "")]
    starter = {r.report_id for r in extra}
    # each fold's training reports and paragraphs of the corpus (the starter corpus's come on top): a learning curve's x
    trained = [[r for r in partition([r for r in records if r.report_id not in set(group)])[0] if r.report_id not in starter]
               for group in groups]
    train_reports = [len({r.report_id for r in rows}) for rows in trained]
    train_paragraphs = [len(rows) for rows in trained]
    evaluations, runs = [], []
    for name, variant in configs.items():
        if runs and models == ["baseline"]:
            break  # the baseline does not change with the encoder's settings
        started = time.monotonic()
        results = cross_validate_many(records, lambda rest: fold_models(rest, name, variant), groups,
                                      progress=lambda xs: tqdm(xs, desc=f"{name}: {folds} folds"))
        minutes = round((time.monotonic() - started) / 60, 2)
        for kind, result in results.items():
            if kind == "baseline" and runs:
                continue  # scored once
            atomic_write_text(Path(out) / f"{kind}-cv-scores.jsonl", dumps_jsonl(result.scores_rows()))
            for mode in MODES:
                evaluations.append(result.evaluation(f"{kind}-cv-{mode}", mode))
                evaluations[-1].metrics["minutes"] = minutes
        runs.append({"name": name, "settings": variant.model_dump(), "minutes": minutes})
        # written after every variant: a long search shows its figures as they come
        table = write_evaluations(evaluations, out, described)
        atomic_write_text(Path(out) / "folds.json", json.dumps({"folds": groups, "corpus": [str(c) for c in corpus],
                                                               "extra_train": [str(e) for e in extra_train or []],
                                                               "train_share": train_share, "train_reports": train_reports,
                                                               "train_paragraphs": train_paragraphs,
                                                               "config": config.model_dump(), "runs": runs},
                                                               ensure_ascii=False, indent=2))
        summary = search_table(evaluations)
        atomic_write_text(Path(out) / "search.md", f"{described[0]}\n\n{summary}\n")
    print(table)
    print(summary)
    print(f"metrics, confusion matrices and errors (worst first) in {out}")
    return evaluations


def search_table(evaluations: list[Evaluation]) -> str:
    """One row per recipe: pooled macro-F1 in each mode and their mean (what the search chooses on),
    the weakest label alone and with the path, ECE alone and with the path, minutes and epochs."""
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for e in evaluations:
        name, _, mode = e.name.rpartition("-cv-")
        rows[name][mode] = e.metrics
    lines = ["| recipe | alone | path | report | mean | weakest label alone | weakest with path | ECE alone | ECE path | minutes | epochs run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, by_mode in sorted(rows.items(), key=lambda kv: -np.mean([kv[1][m]["macro_f1"] for m in MODES])):
        f1 = [by_mode[m]["macro_f1"] for m in MODES]

        def weakest(mode: str) -> str:
            per_label = {k: v["f1"] for k, v in by_mode[mode]["per_label"].items() if v["support"]}
            label = min(per_label, key=per_label.get)
            return f"{label} {per_label[label]:.3f}"

        epochs = [f.get("epochs_run") for f in by_mode["path"].get("folds", []) if f.get("epochs_run")]
        lines.append(f"| {name} | {f1[0]:.3f} | {f1[1]:.3f} | {f1[2]:.3f} | **{np.mean(f1):.3f}** | {weakest('alone')} | "
                     f"{weakest('path')} | {by_mode['alone']['ece']:.3f} | {by_mode['path']['ece']:.3f} | "
                     f"{by_mode['path']['minutes']:.1f} | {'/'.join(map(str, epochs)) or '-'} |")
    return "\n".join(lines)


def labeller_agreement(paths: list[str]) -> dict:
    """How often the heading labeller agrees with hand-checked JSONL labels (all rows, and
    rows not marked `unsure`). Rows are labelled per report, in file order."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    for path in paths:
        records = read_jsonl(path)
        unsure = [bool(obj.get("unsure")) for _, obj in iter_json_objects(path)]
        for run in report_runs(records):
            for i, label in zip(run, label_records([records[i] for i in run])):
                hit = int(label == records[i].label)
                for key in ("all",) + (() if unsure[i] else ("certain",)):
                    totals[key][0] += hit
                    totals[key][1] += 1
                if not hit:
                    misses.append({"file": str(path), "report_id": records[i].report_id, "text": records[i].text[:60],
                                   "label": records[i].label, "labeller": label, "unsure": unsure[i]})
    return {key: {"agreement": round(hit / n, 4), "rows": n} for key, (hit, n) in totals.items()} | {"misses": misses}


def run_check_labeller(paths: list[str], out: Path | None) -> dict:
    result = labeller_agreement(paths)
    for key in ("all", "certain"):
        if key in result:
            print(f"labeller agreement ({key} rows): {result[key]['agreement']:.4f} on {result[key]['rows']}")
    if out:
        atomic_write_text(out, json.dumps(result, ensure_ascii=False, indent=2))
    return result
