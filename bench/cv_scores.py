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
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args(argv)
    if args.command == "average":
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
