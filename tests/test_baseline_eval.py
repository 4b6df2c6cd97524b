import json

from model.loading import load_predictor
from training.dataset import load_split
from training.evaluate import score
from training.pipeline import run_baseline, run_eval
from model.predictor import Prediction
from renda.labels import LABELS
from renda.records import Record


def test_baseline_trains_saves_and_reloads(starter_dataset, tmp_path):
    metrics = run_baseline(starter_dataset, tmp_path / "baseline", seed=13)
    assert metrics["macro_f1"] > 0.5  # far above chance (~0.14) on held-out starter reports
    model = load_predictor(tmp_path / "baseline")
    [prediction] = model.predict(["加强代表联络站建设，办理代表建议一百件。"])
    assert set(prediction.scores) == set(LABELS) and abs(sum(prediction.scores.values()) - 1) < 1e-6
    assert run_baseline(starter_dataset, tmp_path / "baseline", seed=13, if_stale=True) == {}  # up to date: skipped


def test_metrics_and_errors_worst_first():
    records = [Record(report_id="r", text=t, label=l) for t, l in [("甲", "plans"), ("乙", "plans"), ("丙", "other")]]

    def pred(label, p):
        scores = {l: (1 - p) / 6 for l in LABELS} | {label: p}
        return Prediction(label, p, scores)

    result = score("m", records, [pred("supervision", 0.6), pred("deputy", 0.9), pred("other", 0.8)])
    assert result.metrics["accuracy"] == round(1 / 3, 4)
    assert result.metrics["per_label"]["plans"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert result.metrics["macro_f1"] == 0.5  # mean over the labels present in the data (plans 0, other 1)
    assert [e["predicted"] for e in result.errors] == ["deputy", "supervision"]  # most confident first
    assert result.confusion[LABELS.index("plans")][LABELS.index("deputy")] == 1


def test_eval_writes_files_side_by_side_in_three_modes_and_leave_one_report_out(starter_dataset, tmp_path):
    run_baseline(starter_dataset, tmp_path / "baseline", seed=13)
    out = tmp_path / "eval"
    evaluations = run_eval([tmp_path / "baseline"], [str(starter_dataset)], out,
                           loro=[str(starter_dataset / "test.jsonl")])
    names = ["baseline-alone", "baseline-path", "baseline-report", "baseline-loro-alone", "baseline-loro-path", "baseline-loro-report"]
    assert [e.name for e in evaluations] == names
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert list(summary["models"]) == names
    assert summary["models"]["baseline-path"]["paragraphs"] == len(load_split(starter_dataset, "test"))
    for name in names:
        assert (out / name / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    errors = [json.loads(l) for l in (out / "baseline-alone" / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert errors and errors == sorted(errors, key=lambda e: -e["confidence"]) and "heading_path" in errors[0]
    table = (out / "comparison.md").read_text(encoding="utf-8")
    assert "macro_f1" in table and "baseline-loro-report" in table
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows == ["label", *LABELS, "**macro_f1**", "**accuracy**"]  # each row once
    assert len(set(table.splitlines())) == len(table.splitlines())
    loro = summary["models"]["baseline-loro-path"]
    assert loro["reports"] == len(set(r.report_id for r in load_split(starter_dataset, "test")))
    # the heading path is worth something on held-out starter reports, and the whole report more
    f1 = {name: summary["models"][name]["macro_f1"] for name in names[:3]}
    assert f1["baseline-alone"] < f1["baseline-path"] <= f1["baseline-report"]


def test_the_baselines_numpy_arithmetic_is_scikit_learns(tmp_path):
    """Prediction is written out in NumPy so that serving never imports scikit-learn: the same
    probabilities as TfidfVectorizer + LogisticRegression.predict_proba, seven labels and two."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from model.baseline import BaselinePredictor, analyse, documents

    texts = ["制定条例两件，批准法规三件。", "明年要进一步加强代表工作。", "听取审议专项工作报告六个。", "坚持党的领导，加强政治建设。",
             "组织代表视察三次。", "今后要继续做好执法检查。"]
    for labels, names in ((["legislation", "plans", "supervision", "leadership", "deputy", "plans"], LABELS),
                          (["rest", "plans", "rest", "rest", "rest", "plans"], ["plans", "rest"])):
        model = BaselinePredictor.fit(texts, labels, names, 13, {"labels": names})
        tfidf = TfidfVectorizer(analyzer=analyse, sublinear_tf=True, min_df=1, max_features=200_000)
        features = tfidf.fit_transform(documents(texts, [""] * len(texts)))
        clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=13).fit(features, labels)
        unseen = texts + ["常委会全年审议法规草案。", "无关文字"]
        want = clf.predict_proba(tfidf.transform(documents(unseen, [""] * len(unseen))))
        assert np.allclose(model.probabilities(unseen, [""] * len(unseen)), want, atol=1e-9)
        model.save(tmp_path)
        assert np.allclose(BaselinePredictor.load(tmp_path).probabilities(unseen, [""] * len(unseen)), want, atol=1e-9)


def test_serving_a_baseline_does_not_import_scikit_learn(starter_dataset, tmp_path):
    import subprocess
    import sys

    run_baseline(starter_dataset, tmp_path / "baseline", seed=13)
    code = ("import sys; from model.loading import load_predictor; "
            f"load_predictor({str(tmp_path / 'baseline')!r}).predict(['加强代表联络站建设。']); "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
