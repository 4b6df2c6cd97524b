"""Grouped k-fold cross-validation: folds by whole report, every paragraph predicted once by a
model that never saw its report, both recipes on the same folds."""

import json
from collections import Counter

import pytest

from model.predictor import Prediction
from apps.cli import main
from renda.labels import LABELS
from renda.records import DataError, Record
from tests.conftest import STARTER, TINY_OVERRIDES
from training.evaluate import cross_validate, report_folds
from training.pipeline import fold_partition, run_crossval


def records_of(sizes: dict[str, int]) -> list[Record]:
    return [Record(report_id=rid, text=f"{rid}第{i}段", label=LABELS[i % len(LABELS)]) for rid, n in sizes.items() for i in range(n)]


def test_folds_hold_whole_reports_balanced_and_deterministic():
    records = records_of({f"r{i}": n for i, n in enumerate([9, 8, 7, 6, 5, 4, 3, 3, 2, 1])})
    folds = report_folds(records, 3, seed=13)
    assert sorted(r for fold in folds for r in fold) == sorted({r.report_id for r in records})  # each report once
    sizes = Counter(r.report_id for r in records)
    filled = [sum(sizes[r] for r in fold) for fold in folds]
    assert max(filled) - min(filled) <= 1
    assert report_folds(records, 3, seed=13) == folds
    with pytest.raises(DataError, match="folds"):
        report_folds(records, 11, seed=13)


class Memoriser:
    """Predicts the label it saw for a text, else `other`: shows which reports it trained on."""

    labels, info = LABELS, {}

    def __init__(self, seen: list[Record]):
        self.seen = {r.text: r.label for r in seen}

    def predict(self, texts, contexts=None):
        return [Prediction(self.seen.get(t, "other"), 1.0, {l: float(l == self.seen.get(t, "other")) for l in LABELS}) for t in texts]


def test_every_paragraph_is_predicted_once_by_a_model_that_never_saw_its_report():
    records = records_of({"a": 7, "b": 7, "c": 7, "d": 7})
    trained_on: list[set[str]] = []

    def fit(rest):
        trained_on.append({r.report_id for r in rest})
        return Memoriser(rest)

    folds = report_folds(records, 2, seed=1)
    result = cross_validate(records, fit, folds)
    assert sorted(r.text for r in result.records) == sorted(r.text for r in records)
    for fold, seen in zip(folds, trained_on):
        assert not set(fold) & seen and set(fold) | seen == {"a", "b", "c", "d"}
    evaluation = result.evaluation("memoriser", "alone")
    assert evaluation.metrics["accuracy"] == round(1 / 7, 4)  # only the `other` rows, as it never saw them
    assert len(evaluation.metrics["fold_macro_f1"]) == 2


def test_crossval_runs_both_recipes_on_the_same_folds(tiny_base, tmp_path):
    out = tmp_path / "cv"
    evaluations = run_crossval([str(STARTER)], out, 2, ["baseline", "bert"], seed=13,
                               base_model=str(tiny_base), threads=1, **{**TINY_OVERRIDES, "max_steps": 2})
    assert [e.name for e in evaluations] == [f"{kind}-cv-{mode}" for kind in ("baseline", "bert") for mode in ("alone", "path", "report")]
    paragraphs = {e.metrics["paragraphs"] for e in evaluations}
    assert len(paragraphs) == 1 and paragraphs.pop() > 500  # the whole starter corpus, each paragraph once
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(summary["models"]["bert-cv-report"]["fold_macro_f1"]) == 2
    folds = json.loads((out / "folds.json").read_text(encoding="utf-8"))["folds"]
    assert len(folds) == 2 and not set(folds[0]) & set(folds[1])
    assert "2-fold cross-validation" in (out / "comparison.md").read_text(encoding="utf-8")
    # every paragraph's out-of-fold probabilities in the three modes, for what is fitted after the run
    rows = [json.loads(line) for line in (out / "bert-cv-scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == evaluations[0].metrics["paragraphs"] and "text" not in rows[0]
    assert {r["fold"] for r in rows} == {0, 1} and all(r["report_id"] in folds[r["fold"]] for r in rows)
    for mode in ("alone", "path"):
        assert all(abs(sum(r[mode].values()) - 1) < 1e-3 for r in rows)
    report = [e for e in evaluations if e.name == "bert-cv-report"][0]
    assert sum(r["report_label"] != r["label"] for r in rows) == len(report.errors)  # the whole-report labels scored
    assert (out / "baseline-cv-scores.jsonl").exists()


def test_crossval_refuses_extra_training_data_that_overlaps_the_scored_reports(tmp_path, capsys):
    code = main(["crossval", "--corpus", str(STARTER), "--extra-train", str(STARTER), "--models", "baseline",
                 "--out", str(tmp_path / "cv")])
    assert code == 2 and "also in the cross-validated corpus" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


def test_crossval_refuses_an_unknown_recipe(tmp_path, capsys):
    code = main(["crossval", "--corpus", str(STARTER), "--models", "svm", "--out", str(tmp_path / "cv")])
    assert code == 2 and "unknown recipe svm" in capsys.readouterr().err


def test_crossval_search_tries_variants_on_the_same_folds_and_reports_timing(tiny_base, tmp_path):
    """`--try` variants: each its own bert and fused recipe on the same folds; the baseline scored
    once; the settings, minutes, epochs and fitted weights of every fold land in the report."""
    out = tmp_path / "cv"
    variants = [{"freeze_layers": 1}, {"freeze_layers": 1, "context_dropout": 0.0, "seed": 7}]  # a variant's own seed
    evaluations = run_crossval([str(STARTER)], out, 2, ["baseline", "bert", "fused"], seed=13, base_model=str(tiny_base),
                               threads=1, variants=variants, **{**TINY_OVERRIDES, "max_steps": 2})
    names = [e.name for e in evaluations]
    recipes = ["baseline", "bert-freeze_layers=1", "fused-freeze_layers=1",
               "bert-freeze_layers=1-context_dropout=0.0-seed=7", "fused-freeze_layers=1-context_dropout=0.0-seed=7"]
    assert names == [f"{r}-cv-{m}" for r in recipes for m in ("alone", "path", "report")]
    folds_json = json.loads((out / "folds.json").read_text(encoding="utf-8"))
    runs = folds_json["runs"]
    assert [r["name"] for r in runs] == ["bert-freeze_layers=1", "bert-freeze_layers=1-context_dropout=0.0-seed=7"]
    assert runs[1]["settings"]["context_dropout"] == 0.0 and runs[0]["settings"]["freeze_layers"] == 1
    assert runs[1]["settings"]["seed"] == 7 and runs[0]["settings"]["seed"] == 13 and folds_json["config"]["seed"] == 13
    assert all(r["minutes"] >= 0 for r in runs)
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["models"]
    for fold in summary["bert-freeze_layers=1-cv-path"]["folds"]:
        assert fold["epochs_run"] == 1 and fold["fine_tune_minutes"] >= 0 and fold["temperature_alone"] > 0
    for fold in summary["fused-freeze_layers=1-cv-alone"]["folds"]:
        assert 0 <= fold["weight"] <= 1 and 0 <= fold["weight_alone"] <= 1
    assert all("ece" in m for m in summary.values())
    table = (out / "search.md").read_text(encoding="utf-8")
    assert all(f"| {r} |" in table for r in recipes)


def test_a_fold_trained_on_a_share_of_its_reports_keeps_its_dev_and_the_starter_corpus():
    """`train_share`: the learning curve's folds. A smaller share's reports are among a larger one's,
    the dev reports and the extra (starter) corpus stay whole."""
    rest = records_of({f"r{i:02d}": 4 for i in range(20)})
    extra = records_of({"s1": 3, "s2": 3})
    full_train, full_dev = fold_partition(rest, extra, 13, 0.15)
    kept = {}
    for share in (0.25, 0.5, 1.0):
        train, dev = fold_partition(rest, extra, 13, 0.15, share)
        assert dev == full_dev and [r for r in train if r.report_id in ("s1", "s2")] == extra
        kept[share] = {r.report_id for r in train} - {"s1", "s2"}
    corpus_train = {r.report_id for r in full_train} - {"s1", "s2"}
    assert kept[1.0] == corpus_train and len(kept[0.5]) == round(len(corpus_train) / 2)
    assert kept[0.25] < kept[0.5] < kept[1.0]
    assert fold_partition(rest, extra, 13, 0.15, 0.5) == fold_partition(rest, extra, 13, 0.15, 0.5)  # deterministic
    for bad in (0.0, 1.5):
        with pytest.raises(DataError, match="train_share"):
            fold_partition(rest, extra, 13, 0.15, bad)


def test_a_learning_curve_records_each_share_and_tabulates_them(tmp_path, capsys):
    from bench import cv_scores

    for share in ("0.5", "1"):
        assert main(["crossval", "--corpus", str(STARTER), "--folds", "2", "--models", "baseline", "--train-share", share,
                     "--out", str(tmp_path / f"share-{share}")]) == 0
    half = json.loads((tmp_path / "share-0.5" / "folds.json").read_text(encoding="utf-8"))
    whole = json.loads((tmp_path / "share-1" / "folds.json").read_text(encoding="utf-8"))
    assert half["train_share"] == 0.5 and whole["train_share"] == 1.0 and half["folds"] == whole["folds"]
    assert half["corpus"] == [str(STARTER)] and half["extra_train"] == []  # what it ran on, for whoever reads its scores
    assert all(0 < h < w for h, w in zip(half["train_reports"], whole["train_reports"]))
    assert all(0 < h < w for h, w in zip(half["train_paragraphs"], whole["train_paragraphs"]))
    assert "trained on 50% of its training reports" in (tmp_path / "share-0.5" / "comparison.md").read_text(encoding="utf-8")
    assert cv_scores.main(["curve", str(tmp_path / "share-1"), str(tmp_path / "share-0.5"), "--out", str(tmp_path / "curve")]) == 0
    rows = json.loads((tmp_path / "curve" / "curve.json").read_text(encoding="utf-8"))
    assert [(r["recipe"], r["train_share"]) for r in rows] == [("baseline", 0.5), ("baseline", 1.0)]
    summary = json.loads((tmp_path / "share-0.5" / "metrics.json").read_text(encoding="utf-8"))["models"]
    assert rows[0]["alone"] == summary["baseline-cv-alone"]["macro_f1"] and rows[0]["train_reports"] == half["train_reports"]
    assert "| baseline | 0.50 |" in (tmp_path / "curve" / "curve.md").read_text(encoding="utf-8")
    with pytest.raises(SystemExit):  # a folder that holds no finished cross-validation
        cv_scores.main(["curve", str(tmp_path), "--out", str(tmp_path / "curve")])
    assert "not a finished cross-validation" in capsys.readouterr().err


@pytest.mark.parametrize("share", ["0", "1.5", "x"])
def test_crossval_refuses_a_training_share_outside_zero_to_one(share, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["crossval", "--corpus", str(STARTER), "--train-share", share, "--out", str(tmp_path / "cv")])
    assert exit_.value.code == 2 and "--train-share" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()
