"""Calibrated confidence: temperature scaling (model/calibration.py) fitted at training time and
applied when a model loads, and `min_score` abstention on the API and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.bert import BertPredictor
from model.calibration import (
    Calibrated, as_arrays, calibrate, calibrated, ece, fit_temperature, is_uncertain, nll, prediction_ece, reliability, scale,
    stored_temperatures,
)
from model.predictor import Prediction
from model.loading import load_predictor
from model.plans_judge import judged
from apps.cli import main
from renda.labels import LABELS
from serving.main import create_app
from tests.test_service import PARAGRAPHS, settings, wait_ready


def between(scores: list[float]) -> float:
    """A threshold halfway between two middle scores, so some fall below it and some do not (and no
    score sits on it, which rounding in the CLI's output could otherwise blur)."""
    values = sorted(set(scores))
    middle = len(values) // 2
    return (values[middle - 1] + values[middle]) / 2


def synthetic(n: int, sharpen: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), reported as softmax(sharpen · z): over-confident when sharpen > 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, len(LABELS)))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    gold = np.array([rng.choice(len(LABELS), p=row) for row in truth])
    reported = np.exp(sharpen * logits)
    return reported / reported.sum(1, keepdims=True), gold


@pytest.mark.parametrize("sharpen", [3.0, 0.4])  # over-confident, under-confident
def test_temperature_scaling_lowers_ece_on_a_miscalibrated_model(sharpen):
    dev_probs, dev_gold = synthetic(3000, sharpen, seed=1)
    test_probs, test_gold = synthetic(3000, sharpen, seed=2)
    temperature = fit_temperature(dev_probs, dev_gold)
    assert temperature == pytest.approx(sharpen, rel=0.15)  # it recovers the distortion
    before, after = ece(test_probs, test_gold), ece(scale(test_probs, temperature), test_gold)
    assert before > 0.08 and after < 0.03 and after < before / 3, (before, after)
    assert nll(scale(test_probs, temperature), test_gold) < nll(test_probs, test_gold)
    # labels never change: the order of the probabilities is kept
    assert (scale(test_probs, temperature).argmax(1) == test_probs.argmax(1)).all()


def test_a_calibrated_model_keeps_its_temperature_near_one():
    probs, gold = synthetic(4000, 1.0, seed=3)
    assert fit_temperature(probs, gold) == pytest.approx(1.0, abs=0.1)
    assert ece(probs, gold) < 0.03


def test_ece_by_hand():
    # Two rows at confidence 0.9 (one right), two at 0.6 (both right): bins 9 and 6 of 10.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    gold = np.array([0, 1, 0, 1])
    assert ece(probs, gold) == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))
    bins = reliability(probs, gold)
    assert len(bins) == 10 and [b["count"] for b in bins] == [0] * 5 + [2, 0, 0, 2, 0]
    assert ece(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 0.0
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 1.0


def test_scale_is_softmax_of_logits_over_t():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    want = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(1, keepdims=True)
    assert np.allclose(scale(probs, 2.5), want)
    assert np.allclose(scale(probs, 1.0), probs)


def test_calibrated_wrapper_keeps_labels_and_rescales_scores():
    class Fixed:
        labels, model_id, info = LABELS, "fixed", {"temperature": 2.0}

        def predict(self, texts, contexts=None):
            scores = dict(zip(LABELS, [0.7, 0.2, 0.04, 0.03, 0.02, 0.005, 0.005]))
            return [Prediction("leadership", 0.7, scores, windows=2, context=bool(contexts))] * len(texts)

    model = calibrated(Fixed())
    assert isinstance(model, Calibrated) and model.model_id == "fixed" and model.labels == LABELS
    [p] = model.predict(["人大"], [["一、坚持党的领导"]])
    assert p.label == "leadership" and p.windows == 2 and p.context
    assert p.score == p.scores["leadership"] == max(p.scores.values()) < 0.7
    assert sum(p.scores.values()) == pytest.approx(1.0)
    Fixed.info = {}
    assert not isinstance(calibrated(Fixed()), Calibrated)  # a model without a temperature is served as it is


class ByMode:
    """Fixed scores; says whether it read a heading path, as the real predictors do."""

    labels, model_id = LABELS, "by-mode"
    scores = dict(zip(LABELS, [0.6, 0.25, 0.05, 0.04, 0.03, 0.02, 0.01]))

    def __init__(self, info):
        self.info = info

    def predict(self, texts, contexts=None):
        contexts = contexts or [[] for _ in texts]
        return [Prediction("leadership", 0.6, dict(self.scores), context=bool(c)) for c in contexts]


def test_each_mode_is_scaled_by_its_own_temperature():
    model = calibrated(ByMode({"temperature": 2.0, "temperature_alone": 0.5}))
    with_path, alone = model.predict(["甲", "乙"], [["一、坚持党的领导"], []])
    raw = np.array([[ByMode.scores[l] for l in LABELS]])
    assert with_path.context and not alone.context
    assert np.allclose([with_path.scores[l] for l in LABELS], scale(raw, 2.0)[0])
    assert np.allclose([alone.scores[l] for l in LABELS], scale(raw, 0.5)[0])
    assert alone.score > 0.6 > with_path.score
    # a folder from before per-mode calibration: its one temperature serves both modes
    old = calibrated(ByMode({"temperature": 2.0}))
    assert [p.scores for p in old.predict(["甲", "乙"], [["一"], []])] == [with_path.scores] * 2


@pytest.mark.parametrize("bad", [0, -1.0, "2", True, float("inf"), float("nan")])
@pytest.mark.parametrize("key", ["temperature", "temperature_alone"])
def test_a_stored_temperature_that_is_not_a_positive_number_is_refused(key, bad):
    with pytest.raises(ValueError, match=key):
        calibrated(ByMode({"temperature": 1.5, key: bad}))
    assert stored_temperatures({"temperature": 1.5, "temperature_alone": 0.7}) == (1.5, 0.7)


def test_ece_of_predictions_uses_each_ones_own_label():
    confident_right = Prediction("plans", 0.9, {"plans": 0.9})
    confident_wrong = Prediction("deputy", 0.9, {"deputy": 0.9})
    assert prediction_ece([confident_right] * 9 + [confident_wrong], ["plans"] * 10) == pytest.approx(0.0)
    assert prediction_ece([confident_wrong] * 2, ["plans"] * 2) == pytest.approx(0.9)


def test_is_uncertain():
    assert is_uncertain(0.4, None) is None
    assert is_uncertain(0.4, 0.5) is True and is_uncertain(0.5, 0.5) is False and is_uncertain(0.0, 0.0) is False


# --- the trained tiny model: temperature stored, ECE reported, applied on load ------------------


def test_training_stores_the_temperature_and_reports_ece(tiny_model):
    meta = json.loads((tiny_model / "renda_model.json").read_text(encoding="utf-8"))
    temperature = meta["temperature"]
    assert isinstance(temperature, float) and 0.25 <= temperature <= 4
    metrics = json.loads((tiny_model / "metrics.json").read_text(encoding="utf-8"))
    calibration = metrics["calibration"]
    assert calibration["temperature"] == temperature and calibration["bins"] == 10 and calibration["fitted_on"] == "dev"
    assert calibration["paragraphs"] == metrics["paragraphs"]  # the test split
    for key in ("ece_before", "ece_after", "nll_before", "nll_after"):
        assert 0 <= calibration[key]
    assert meta["test_metrics"]["calibration"] == calibration
    alone = metrics["alone"]["calibration"]  # the paragraph alone: its own temperature and ECE
    assert alone["temperature"] == meta["temperature_alone"] and 0.25 <= alone["temperature"] <= 4
    assert alone["diagram"] == "reliability-alone.png" and (tiny_model / alone["diagram"]).is_file()
    assert all(0 <= metrics[m]["ece"] <= 1 for m in ("alone", "report")) and 0 <= metrics["ece"] <= 1
    png = tiny_model / calibration["diagram"]
    assert png.name == "reliability.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "temperature T =" in (tiny_model / "README.md").read_text(encoding="utf-8")


def test_load_predictor_applies_the_temperature_of_each_mode(tiny_model):
    meta = json.loads((tiny_model / "renda_model.json").read_text(encoding="utf-8"))
    raw, served = BertPredictor.load(tiny_model), load_predictor(tiny_model)
    paths = [[], ["二、2025年主要任务"], [], ["一、坚持党的领导"], []]
    before, after = raw.predict(PARAGRAPHS, paths), served.predict(PARAGRAPHS, paths)
    verdicts = served.judge.predict(PARAGRAPHS)  # a paragraph read alone is then judged plans-or-not (model/plans_judge.py)
    for b, a, path, verdict in zip(before, after, paths, verdicts):
        want = scale(as_arrays([b], [b.label], LABELS)[0], meta["temperature"] if path else meta["temperature_alone"])
        if not path:
            scaled = dict(zip(LABELS, map(float, want[0])))
            judged_once = calibrate(judged(Prediction(b.label, 0.0, scaled), verdict.scores["plans"], LABELS), LABELS, served.temperature)
            want = as_arrays([judged_once], [b.label], LABELS)[0]
        assert np.allclose(as_arrays([a], [a.label], LABELS)[0], want, atol=1e-6)
    assert all(p.score == p.scores[p.label] for p in after)


# --- min_score on the API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(settings(), model_dir=tiny_model), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def test_classify_min_score(client):
    plain = client.post("/v1/classify", json={"paragraphs": PARAGRAPHS}).json()["results"]
    assert all("uncertain" not in r for r in plain)  # no threshold asked for: no flag
    threshold = between([r["score"] for r in plain])
    for min_score in (0.0, threshold, 1.0):
        response = client.post("/v1/classify", json={"paragraphs": PARAGRAPHS, "min_score": min_score})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["uncertain"] for r in results] == [r["score"] < min_score for r in results]
        assert [r["label"] for r in results] == [r["label"] for r in plain]  # the label is given either way
    flags = [r["uncertain"] for r in client.post("/v1/classify", json={"paragraphs": PARAGRAPHS, "min_score": threshold}).json()["results"]]
    assert any(flags) and not all(flags)


def test_report_min_score(client, sample_report):
    plain = client.post("/v1/reports", json={"text": sample_report}).json()
    assert all("uncertain" not in p for p in plain["paragraphs"])
    body = client.post("/v1/reports", json={"text": sample_report, "min_score": 0.3}).json()
    assert [p["uncertain"] for p in body["paragraphs"]] == [p["score"] < 0.3 for p in body["paragraphs"]]
    assert [p["section_label"] for p in body["paragraphs"]] == [p["section_label"] for p in plain["paragraphs"]]


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "high", "0.5", True])
def test_min_score_out_of_range(client, path, value):
    body = {"paragraphs": PARAGRAPHS[:1]} if path == "/v1/classify" else {"text": PARAGRAPHS[0]}
    response = client.post(path, json={**body, "min_score": value})
    assert response.status_code == 422, response.text
    assert "min_score" in response.json()["detail"]


def test_model_info_reports_the_calibration(client):
    held_out = client.get("/v1/model").json()["held_out_metrics"]
    assert {"temperature", "ece_before", "ece_after"} <= set(held_out["calibration"])


# --- min_score on the CLI ------------------------------------------------------------------------


def test_cli_min_score(tiny_model, tmp_path, sample_report, capsys):
    lines = tmp_path / "paragraphs.jsonl"
    lines.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in PARAGRAPHS), encoding="utf-8")
    report = tmp_path / "report.txt"
    report.write_text(sample_report, encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert main(["classify", str(lines), str(report), "--model", str(tiny_model), "--out", str(out)]) == 0
    plain = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert all("uncertain" not in row for row in plain)
    threshold = between([row["score"] for row in plain])
    assert main(["classify", str(lines), str(report), "--model", str(tiny_model), "--out", str(out),
                 "--min-score", str(threshold)]) == 0
    rows = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(plain) and [r["label"] for r in rows] == [r["label"] for r in plain]
    assert [r["uncertain"] for r in rows] == [r["score"] < threshold for r in rows]
    assert any(r["uncertain"] for r in rows) and not all(r["uncertain"] for r in rows)
    table = tmp_path / "labels.csv"
    assert main(["classify", str(lines), "--model", str(tiny_model), "--out", str(table), "--min-score", "1"]) == 0
    assert table.read_text(encoding="utf-8").splitlines()[0].split(",").count("uncertain") == 1
    capsys.readouterr()


@pytest.mark.parametrize("value", ["1.5", "-0.2", "half"])
def test_cli_min_score_out_of_range(tiny_model, tmp_path, value, capsys):
    lines = tmp_path / "paragraphs.jsonl"
    lines.write_text(json.dumps({"text": PARAGRAPHS[0]}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(lines), "--model", str(tiny_model), "--min-score", value])
    assert exit_info.value.code == 2
    assert "--min-score" in capsys.readouterr().err
