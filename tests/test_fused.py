"""Two models, one answer (model/fused.py): the encoder's and the n-gram model's probabilities
averaged, the encoder's share per mode fitted on dev, stored in the model folder and applied on load."""

import json
import shutil

import numpy as np
import pytest

from model.baseline import BaselinePredictor
from model.bert import BertPredictor
from model.calibration import calibrated
from model.fused import FusedPredictor, fit_weight, mix
from model.predictor import Prediction
from model.loading import load_predictor
from renda.labels import LABELS
from tests.conftest import TINY_OVERRIDES
from training.config import load_config
from training.train import FUSION_DIR, train_bert


def fixed(label: str, share: float = 0.9, context: bool = False) -> Prediction:
    rest = (1 - share) / (len(LABELS) - 1)
    scores = {l: share if l == label else rest for l in LABELS}
    return Prediction(label, share, scores, context=context)


class Fixed:
    labels, model_id, info = LABELS, "fixed", {}

    def __init__(self, label):
        self.label = label

    def predict(self, texts, contexts=None):
        contexts = contexts or [[] for _ in texts]
        return [fixed(self.label, context=bool(c)) for c in contexts]


def test_the_mixture_is_a_distribution_and_each_mode_has_its_weight():
    fused = FusedPredictor(Fixed("plans"), Fixed("deputy"), weight=0.8, weight_alone=0.2)
    with_path, alone = fused.predict(["甲", "乙"], [["二、今后工作"], []])
    for p in (with_path, alone):
        assert sum(p.scores.values()) == pytest.approx(1.0) and p.score == max(p.scores.values())
    assert with_path.label == "plans" and with_path.context and with_path.scores["plans"] == pytest.approx(0.8 * 0.9 + 0.2 * 0.1 / 6)
    assert alone.label == "deputy" and not alone.context
    assert mix(fixed("plans"), fixed("deputy"), 1.0, LABELS).scores == fixed("plans").scores


def test_fitted_weight_follows_the_model_that_is_right():
    gold = ["plans", "deputy", "plans", "other"]
    right = [fixed(g) for g in gold]
    wrong = [fixed("leadership") for _ in gold]
    assert fit_weight(right, wrong, gold, LABELS) == 1.0
    assert fit_weight(wrong, right, gold, LABELS) == 0.0
    assert fit_weight([], [], [], LABELS) == 1.0


@pytest.mark.parametrize("bad", [{"weight": 1.5}, {"weight_alone": -0.1}, {"weight": "0.5"}])
def test_weights_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="weight"):
        FusedPredictor(Fixed("plans"), Fixed("deputy"), **{"weight": 0.5, "weight_alone": 0.5, **bad})


@pytest.fixture(scope="module")
def fused_model(tmp_path_factory, starter_dataset, tiny_base):
    out = tmp_path_factory.mktemp("models") / "fused"
    train_bert(starter_dataset, out, str(tiny_base), load_config(**{**TINY_OVERRIDES, "fusion": True, "plans_judge": False}), threads=1, progress=False)
    return out


def test_fusion_weights_round_trip_through_the_model_folder(fused_model):
    meta = json.loads((fused_model / "renda_model.json").read_text(encoding="utf-8"))
    entry = meta["fusion"]
    assert entry["model"] == FUSION_DIR and (fused_model / FUSION_DIR / "weights.npz").is_file()
    served = load_predictor(fused_model)
    assert isinstance(served, FusedPredictor)
    assert (served.weight, served.weight_alone) == (entry["weight"], entry["weight_alone"])
    texts = ["制定条例两件，审查规范性文件。", "加强代表联络站建设。"]
    paths = [["一、立法工作"], []]
    got = served.predict(texts, paths)
    encoder = calibrated(BertPredictor.load(fused_model)).predict(texts, paths)
    ngram = BaselinePredictor.load(fused_model / FUSION_DIR).predict(texts, paths)
    for p, a, b, w in zip(got, encoder, ngram, (entry["weight"], entry["weight_alone"])):
        assert sum(p.scores.values()) == pytest.approx(1.0)
        assert np.allclose([p.scores[l] for l in LABELS], [w * a.scores[l] + (1 - w) * b.scores[l] for l in LABELS])
    assert meta["test_metrics"]["paragraphs"] > 0  # scored as served: fused


@pytest.mark.parametrize("entry", [{"model": "../elsewhere", "weight": 0.5, "weight_alone": 0.5},
                                   {"model": FUSION_DIR, "weight": 2, "weight_alone": 0.5},
                                   {"model": FUSION_DIR, "weight": 0.5}, "ngram"])
def test_a_bad_fusion_entry_refuses_the_folder(fused_model, tmp_path, entry):
    broken = tmp_path / "broken"
    shutil.copytree(fused_model, broken)
    meta_path = broken / "renda_model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.write_text(json.dumps({**meta, "fusion": entry}), encoding="utf-8")
    with pytest.raises(ValueError, match="fusion|weight"):
        load_predictor(broken)
