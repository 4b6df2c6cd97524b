"""What cross-validation's out-of-fold scores say beyond its table: `make cv-ensemble`, `make cv-ceiling`.

`average` (`make cv-ensemble`): would averaging several trained models pay? `renda crossval` writes each recipe's out-of-fold probabilities (`<recipe>-cv-scores.jsonl`: every
paragraph scored in the three modes by a model that never saw its report). Given the files of
recipes run on the same folds (seeds of one recipe, say: `--try seed=13 --try seed=1 …`), this
averages their probabilities paragraph by paragraph and scores the average, beside each member:
the figure an ensemble of those models would reach, without training one, alone and with the
heading path. Whole-report mode is each member's own (its label comes from a combiner fitted on
its fold's dev reports, over the whole report: not rebuilt here). Writes cv_ensemble.json and .md.

`ceiling` (`make cv-ceiling`): how far the paragraph alone could go if one confusion were solved.
Every miss in which the gold or the predicted label is one of a group (`plans`: a paragraph of the
plans part called by its topic, or a review paragraph called `plans`) is counted right, the rest
left as they are: the macro-F1 a perfect judge of that one question would add to this model. For a
one-label group it also gives the average precision of the model's score for that label (how well
it ranks that label's paragraphs first). Writes cv_ceiling.json.

`judge` (`make cv-judge`): what the plans judge (model/plans_judge.py) makes of a run's paragraphs
read alone, in a minute instead of a cross-validation of the encoder. On the same folds as the run
(the corpus, folds, seed and dev share must be the run's: checked against the files' folds), the
judge is refitted on each fold's training paragraphs, the starter corpus added, and each
paragraph's out-of-fold scores alone are judged as the served model judges them: P(plans) the
judge's, the other labels sharing the rest in the encoder's proportions (the encoder's `other` left as it is). The judge's settings
(units, C, starter weight) may differ from training/config.toml's, which is what this is for
(docs/encoder-recipe.md, rounds 8-11). Labels only: the judged scores' temperature, which moves no
label, is fitted in cross-validation, not here. Writes cv_judge.json and .md.

`curve` (`make learning-curve`): would more labelled reports lift the figures, and by how much?
Given the folders of cross-validations on the same folds, each fold trained on a share of its
training reports (`renda crossval --train-share`), one table: for each share the corpus's training
reports and paragraphs per fold and every recipe's macro-F1 in each mode, with its weakest label alone. Writes
curve.json and .md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from model.metrics import macro_f1
from renda.records import atomic_write_text

MODES = ("alone", "path")  # averaged; whole-report labels are read as each member gave them


def read_scores(path: Path | str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def averaged(members: list[list[dict]]) -> list[dict]:
    """The members' probabilities averaged per paragraph and mode; the members must score the same
    paragraphs in the same order (the same folds of the same corpus)."""
    keys = [[(r["report_id"], r["index"], r["label"]) for r in m] for m in members]
    if any(k != keys[0] for k in keys[1:]):
        raise ValueError("the score files do not cover the same paragraphs in the same order: run them on the same folds")
    rows = []
    for parts in zip(*members):
        row = {k: parts[0][k] for k in ("report_id", "index", "fold", "label")}  # no report label: an ensemble's is not known
        for mode in MODES:
            labels = list(parts[0][mode])
            mean = np.mean([[p[mode][label] for label in labels] for p in parts], axis=0)
            row[mode] = dict(zip(labels, mean.tolist()))
        rows.append(row)
    return rows


def mode_scores(rows: list[dict]) -> dict[str, float | None]:
    gold = [r["label"] for r in rows]
    f1 = {mode: round(macro_f1(gold, [max(r[mode], key=r[mode].get) for r in rows]), 4) for mode in MODES}
    return f1 | {"report": round(macro_f1(gold, [r["report_label"] for r in rows]), 4) if "report_label" in rows[0] else None}


def run(paths: list[str], out: Path | str) -> dict:
    members = [read_scores(p) for p in paths]
    table = {Path(p).name.removesuffix("-cv-scores.jsonl"): mode_scores(m) for p, m in zip(paths, members)}
    table["average of all"] = mode_scores(averaged(members))
    result = {"files": paths, "paragraphs": len(members[0]), "macro_f1": table}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cv_ensemble.json", json.dumps(result, ensure_ascii=False, indent=2))
    lines = ["| recipe | alone | path | mean of the two | whole report |", "|---|---|---|---|---|"]
    for name, f1 in table.items():
        report = "-" if f1["report"] is None else f"{f1['report']:.3f}"
        lines.append(f"| {name} | " + " | ".join(f"{f1[m]:.3f}" for m in MODES) + f" | **{np.mean([f1[m] for m in MODES]):.3f}** | {report} |")
    atomic_write_text(out / "cv_ensemble.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def ceiling(path: str, groups: list[list[str]], mode: str, out: Path | str) -> dict:
    """Macro-F1 in `mode` as scored, then with each group's confusions counted right, one group
    after another (cumulative), in the order given."""
    rows = read_scores(path)
    gold = [r["label"] for r in rows]
    predicted = [max(r[mode], key=r[mode].get) for r in rows]
    steps = [{"solved": [], "macro_f1": round(macro_f1(gold, predicted), 4), "misses": sum(g != p for g, p in zip(gold, predicted))}]
    for group in groups:
        unknown = set(group) - set(gold) - {p for p in predicted}
        if unknown:
            raise ValueError(f"no paragraph is labelled or predicted {', '.join(sorted(unknown))}")
        if len(group) == 1:  # one label: every confusion it takes part in
            predicted = [g if group[0] in (g, p) else p for g, p in zip(gold, predicted)]
        else:  # several: only the confusions among them
            predicted = [g if {g, p} <= set(group) else p for g, p in zip(gold, predicted)]
        steps.append({"solved": steps[-1]["solved"] + ["/".join(group)], "macro_f1": round(macro_f1(gold, predicted), 4),
                      "misses": sum(g != p for g, p in zip(gold, predicted))})
    # how well the model's own score for each single label ranks that label's paragraphs (1 = perfectly)
    ranking = {g[0]: round(float(average_precision_score([x == g[0] for x in gold], [r[mode][g[0]] for r in rows])), 4)
               for g in groups if len(g) == 1}
    result = {"file": path, "mode": mode, "paragraphs": len(rows), "steps": steps, "average_precision": ranking}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cv_ceiling.json", json.dumps(result, ensure_ascii=False, indent=2))
    for step in steps:
        print(f"{' + '.join(step['solved']) or 'as scored':40s} macro-F1 {step['macro_f1']:.3f}  misses {step['misses']}")
    for label, value in ranking.items():
        print(f"average precision of P({label}) {mode}: {value:.3f}")
    return result


def out_of_fold_judge(corpus: list[str], extra_train: list[str], folds: int, seed: int, dev_fraction: float,
                      units: str, starter_weight: float, c: float, base_model: str, train_share: float = 1.0) -> tuple[dict, dict]:
    """(P(plans) of each corpus paragraph by a judge that never saw its report, fold of each report),
    keyed as cross-validation numbers paragraphs: (report, index within the report in corpus order)."""
    from model.baseline import WORDS
    from model.plans_judge import PLANS, fit_plans_judge
    from renda.corpus import load_corpus
    from training.dataset import row_weights
    from training.evaluate import report_folds
    from training.pipeline import fold_partition

    records = load_corpus(corpus).records
    extra = load_corpus(extra_train).records if extra_train else []
    groups = report_folds(records, folds, seed)
    fold_of = {report: k for k, group in enumerate(groups) for report in group}
    seen: Counter = Counter()
    keyed = {}
    for record in records:
        keyed[(record.report_id, seen[record.report_id])] = record
        seen[record.report_id] += 1
    tokenizer = None
    if units == WORDS:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base_model)
    plans = {}
    for k, group in enumerate(groups):
        train, _ = fold_partition([r for r in records if r.report_id not in group], extra, seed, dev_fraction, train_share)
        model = fit_plans_judge(train, seed, None, row_weights(train, starter_weight), tokenizer, c)
        keys = [key for key in keyed if fold_of[key[0]] == k]
        for key, verdict in zip(keys, model.predict([keyed[key].text for key in keys])):
            plans[key] = verdict.scores[PLANS]
    return plans, fold_of


def run_folds(scores: str) -> dict:
    """The folds.json of the cross-validation that wrote `scores` (beside its score files); {} when
    there is none. ValueError when it is not a JSON object."""
    folds = Path(scores).parent / "folds.json"
    if not folds.is_file():
        return {}
    record = json.loads(folds.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def run_train_share(scores: str) -> float:
    """The share of each fold's training reports a cross-validation trained on, as its folds.json
    records it; 1 when it records none (runs before the option)."""
    try:
        return float(run_folds(scores).get("train_share", 1.0))
    except (ValueError, TypeError) as error:  # not JSON, not an object, not a number
        raise ValueError(f"{Path(scores).parent / 'folds.json'}: cannot read its train_share ({error}); give --train-share") from None


def run_extra_train(scores: str) -> list[str] | None:
    """The corpora the cross-validation that wrote `scores` added to its training data, as its
    folds.json records them; None when it records none (older runs) or cannot be read."""
    try:
        recorded = run_folds(scores).get("extra_train")
    except ValueError:  # unreadable: run_train_share says so where it matters
        return None
    return [str(p) for p in recorded] if isinstance(recorded, list) else None


def extra_train_note(ran_with: list[str] | None, given: list[str]) -> str:
    """A line for the report when the judge trains on other extra corpora than the encoder did
    (allowed: a judge-only experiment; said, so that a slip is seen)."""
    if ran_with is None or sorted(Path(p).resolve() for p in ran_with) == sorted(Path(p).resolve() for p in given):
        return ""
    return (f"note: the run's encoder trained with --extra-train {' '.join(ran_with) or '(none)'}; "
            f"this judge with {' '.join(given) or '(none)'}")


def judge(paths: list[str], plans: dict, fold_of: dict, settings: dict, out: Path | str, note: str = "") -> dict:
    """Each file's paragraphs alone as scored and as judged by `plans` (out_of_fold_judge); `note`
    goes into the report as it is."""
    from model.plans_judge import PLANS, is_judged, judged
    from model.predictor import Prediction

    table = {}
    for path in paths:
        rows = read_scores(path)
        if {(r["report_id"], r["index"]) for r in rows} != set(plans) or any(fold_of[r["report_id"]] != r["fold"] for r in rows):
            raise ValueError(f"{path}: not scored on these folds of this corpus (give the run's corpus, --folds, --seed and --extra-train)")
        gold = [r["label"] for r in rows]
        labels = list(rows[0]["alone"])
        scored = [Prediction(max(r["alone"], key=r["alone"].get), 0.0, r["alone"]) for r in rows]  # read alone, as served
        verdicts = [judged(p, plans[(r["report_id"], r["index"])], labels) if is_judged(p) else p for p, r in zip(scored, rows)]
        is_plans = [g == PLANS for g in gold]
        table[Path(path).name.removesuffix("-cv-scores.jsonl")] = {
            "alone_as_scored": round(macro_f1(gold, [p.label for p in scored]), 4),
            "alone_judged": round(macro_f1(gold, [v.label for v in verdicts]), 4),
            "average_precision_plans_as_scored": round(float(average_precision_score(is_plans, [r["alone"][PLANS] for r in rows])), 4),
            "average_precision_plans_judged": round(float(average_precision_score(is_plans, [v.scores[PLANS] for v in verdicts])), 4),
        }
    result = {"files": paths, "judge": settings, "paragraphs": len(plans), "alone": table,
              "mean_alone_judged": round(float(np.mean([t["alone_judged"] for t in table.values()])), 4),
              **({"note": note} if note else {})}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cv_judge.json", json.dumps(result, ensure_ascii=False, indent=2))
    lines = [f"The plans judge ({', '.join(f'{k} {v}' for k, v in settings.items())}) refitted per fold, on each file's paragraphs alone",
             "", "| recipe | alone as scored | alone judged | AP of P(plans) as scored | judged |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {t['alone_as_scored']:.3f} | **{t['alone_judged']:.3f}** | {t['average_precision_plans_as_scored']:.3f} | "
              f"{t['average_precision_plans_judged']:.3f} |" for name, t in table.items()]
    lines.append(f"\nmean alone judged: {result['mean_alone_judged']:.3f}")
    if note:
        lines.append(f"\n{note}")
    atomic_write_text(out / "cv_judge.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def curve(runs: list[str], out: Path | str) -> dict:
    """One row per (share, recipe) of the cross-validation folders `runs` (their folds.json and metrics.json)."""
    from training.evaluate import MODES as CV_MODES  # every mode cross-validation scores (MODES here: those averaged)

    rows = []
    for run in runs:
        folds_file, metrics_file = Path(run) / "folds.json", Path(run) / "metrics.json"
        if not (folds_file.is_file() and metrics_file.is_file()):
            raise ValueError(f"{run}: not a finished cross-validation (no folds.json and metrics.json)")
        folds = json.loads(folds_file.read_text(encoding="utf-8"))
        models = json.loads(metrics_file.read_text(encoding="utf-8"))["models"]
        recipes = sorted({name.rpartition("-cv-")[0] for name in models})
        for recipe in recipes:
            alone = models[f"{recipe}-cv-alone"]
            weakest = min((label for label, v in alone["per_label"].items() if v["support"]), key=lambda label: alone["per_label"][label]["f1"])
            rows.append({"run": str(run), "train_share": folds.get("train_share", 1.0),
                         "train_reports": folds.get("train_reports"), "train_paragraphs": folds.get("train_paragraphs"), "recipe": recipe,
                         **{mode: models[f"{recipe}-cv-{mode}"]["macro_f1"] for mode in CV_MODES},
                         "weakest_alone": [weakest, alone["per_label"][weakest]["f1"]]})
    rows.sort(key=lambda r: (r["recipe"], r["train_share"]))
    lines = ["| recipe | share of training reports | corpus reports per fold | their paragraphs | alone | path | report | weakest label alone |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['train_share']:.2f} | {'/'.join(map(str, r['train_reports'] or [])) or '-'} | "
              f"{'/'.join(map(str, r['train_paragraphs'] or [])) or '-'} | "
              f"{r['alone']:.3f} | {r['path']:.3f} | {r['report']:.3f} | {r['weakest_alone'][0]} {r['weakest_alone'][1]:.3f} |"
              for r in rows]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "curve.json", json.dumps(rows, ensure_ascii=False, indent=2))
    atomic_write_text(out / "curve.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    average = commands.add_parser("average", help="score the average of several recipes' out-of-fold probabilities")
    average.add_argument("scores", nargs="+", help="<recipe>-cv-scores.jsonl files of one cross-validation's folds")
    average.add_argument("--out", default="reports/cv-ensemble")
    solved = commands.add_parser("ceiling", help="macro-F1 if one confusion after another were solved")
    solved.add_argument("scores", help="one <recipe>-cv-scores.jsonl")
    solved.add_argument("--solve", action="append", required=True, metavar="LABEL[/LABEL…]",
                        help="a label (every confusion it takes part in) or labels joined by / (the confusions among them)")
    solved.add_argument("--mode", choices=MODES, default="alone")
    solved.add_argument("--out", default="reports/cv-ceiling")
    refit = commands.add_parser("judge", help="the plans judge refitted per fold, on out-of-fold scores alone")
    refit.add_argument("scores", nargs="+", help="<recipe>-cv-scores.jsonl files of one cross-validation's folds")
    refit.add_argument("--corpus", nargs="+", required=True, help="the cross-validated corpus, as the run had it")
    refit.add_argument("--extra-train", nargs="*", default=[], help="corpora added to every fold's training data (the run's)")
    refit.add_argument("--folds", type=int, default=5)
    refit.add_argument("--seed", type=int, default=13, help="the run's seed: its folds and dev splits")
    refit.add_argument("--units", choices=("words", "chars"), help="the judge's n-grams (default: training/config.toml's)")
    refit.add_argument("--c", type=float, help="the judge's C (default: the n-gram model's)")
    refit.add_argument("--starter-weight", type=float, help="the judge's weight of a starter paragraph (default: training/config.toml's plans_judge_starter_weight)")
    refit.add_argument("--train-share", type=float, help="the share of each fold's training reports the run trained on "
                                                          "(default: its folds.json's, beside the first score file; else 1)")
    refit.add_argument("--out", default="reports/cv-judge")
    grown = commands.add_parser("curve", help="the figures of cross-validations trained on shares of their reports, one table")
    grown.add_argument("runs", nargs="+", help="cross-validation folders (renda crossval --train-share S --out DIR)")
    grown.add_argument("--out", default="reports/curve")
    args = parser.parse_args(argv)
    if args.command == "curve":
        try:
            curve(args.runs, args.out)
        except ValueError as error:
            parser.error(str(error))
    elif args.command == "judge":
        from model.baseline import C
        from renda.settings import Settings
        from training.config import load_config

        config, settings = load_config(), Settings()
        try:
            chosen = {"units": args.units or config.plans_judge_units, "C": C if args.c is None else args.c,
                      "starter_weight": config.plans_judge_starter_weight if args.starter_weight is None else args.starter_weight,
                      "train_share": run_train_share(args.scores[0]) if args.train_share is None else args.train_share}
            plans, fold_of = out_of_fold_judge(args.corpus, args.extra_train, args.folds, args.seed, settings.dev_fraction,
                                               chosen["units"], chosen["starter_weight"], chosen["C"], config.base_model or settings.base_model,
                                               chosen["train_share"])
            judge(args.scores, plans, fold_of, chosen, args.out, extra_train_note(run_extra_train(args.scores[0]), args.extra_train))
        except ValueError as error:  # a DataError too
            parser.error(str(error))
    elif args.command == "average":
        if len(args.scores) < 2:
            parser.error("give two score files or more")
        run(args.scores, args.out)
    else:
        try:
            ceiling(args.scores, [g.split("/") for g in args.solve], args.mode, args.out)
        except ValueError as error:
            parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
