"""A paragraph read alone is judged plans-or-not by a model of that one question
(model/plans_judge.py): P(plans) from the judge, the other labels sharing the rest as the encoder
gave them; paragraphs read with their heading path keep the encoder's scores. The judge is stored in
the model folder, applied on load and shown in GET /v1/model."""

import json
import shutil

import numpy as np
import pytest

from model.baseline import BaselinePredictor, WordPieces
from model.bert import BertPredictor
from model.loading import load_predictor
from model.calibration import calibrate
from model.plans_judge import JUDGE_DIR, PlansJudged, fit_plans_judge, judged
from model.predictor import Prediction
from renda.labels import LABELS
from renda.records import Record
from tests.conftest import TINY_OVERRIDES
from training.config import load_config
from training.train import train_bert

# Paragraphs written for this test: plans in the future tense, reviews in the past.
PLANS = ["明年要进一步加强地方立法工作，将制定条例三件。", "今后要继续做好代表建议督办工作。",
         "新的一年，常委会将围绕中心工作开展执法检查。", "要进一步加强常委会自身建设，提高履职能力。"]
REVIEW = ["一年来，常委会制定条例三件，批准法规两件。", "全年督办代表建议一百二十件，办结率百分之百。",
          "常委会开展执法检查四次，听取审议专项工作报告六个。", "举办常委会组成人员培训班两期，修订工作规则五项。"]


def records() -> list[Record]:
    labels = ["plans"] * 4 + ["legislation", "deputy", "supervision", "self_building"]
    return [Record(report_id=f"r{i % 3}", text=t, label=l) for i, (t, l) in enumerate(zip(PLANS + REVIEW, labels))]


def prediction(scores: dict, context: bool) -> Prediction:
    best = max(scores, key=scores.get)
    return Prediction(best, scores[best], scores, context=context)


def test_judged_scores_are_a_distribution_that_keeps_the_encoders_proportions():
    encoder = {label: 0.05 for label in LABELS} | {"deputy": 0.4, "plans": 0.3}
    encoder["other"] += 1 - sum(encoder.values())
    got = judged(prediction(encoder, False), 0.7, LABELS)
    assert got.label == "plans" and got.scores["plans"] == pytest.approx(0.7) and sum(got.scores.values()) == pytest.approx(1.0)
    rest = 1 - encoder["plans"]
    assert got.scores["deputy"] == pytest.approx(0.3 * 0.4 / rest) and got.scores["legislation"] == pytest.approx(0.3 * 0.05 / rest)
    assert judged(prediction(encoder, False), 0.1, LABELS).label == "deputy"  # a review: the encoder's best other label


def test_only_paragraphs_read_alone_are_judged():
    train = records()
    encoder = BaselinePredictor.fit([r.text for r in train], [r.label for r in train], LABELS, 13, {"labels": LABELS})
    judge = fit_plans_judge(train, 13)
    served = PlansJudged(encoder, judge)
    texts = [PLANS[0], REVIEW[0], PLANS[0]]
    paths = [[], [], ["五、今后工作"]]
    got, plain, verdicts = served.predict(texts, paths), encoder.predict(texts, paths), judge.predict(texts)
    for p, v in zip(got[:2], verdicts):
        assert not p.context and p.scores["plans"] == pytest.approx(v.scores["plans"]) and sum(p.scores.values()) == pytest.approx(1)
    assert got[0].label == "plans" and got[1].label != "plans"
    assert got[2].context and got[2].scores == plain[2].scores  # with its heading path: the encoder's own


class Fixed:
    """An encoder that gives each text the scores written for it (read alone: no context)."""

    labels, info, model_id = LABELS, {}, "fixed"

    def __init__(self, scores: dict[str, dict]):
        self.scores = scores

    def predict(self, texts, contexts=None):
        return [prediction(self.scores[t], False) for t in texts]


def test_a_paragraph_the_encoder_reads_as_other_alone_keeps_its_scores():
    """A review's opening reads like a plans opening to the judge; the encoder's `other` is kept, and
    the judged scores' temperature is fitted on the paragraphs the judge decides only."""
    opening = "本次会议的开幕词，感谢各位代表。"  # written for this test
    sure_other = {label: 0.01 for label in LABELS} | {"other": 0.94}
    deputy = {label: 0.05 for label in LABELS} | {"deputy": 0.7}
    encoder = Fixed({opening: sure_other, PLANS[0]: deputy, REVIEW[1]: deputy})
    judge = fit_plans_judge(records(), 13)
    served = PlansJudged(encoder, judge)
    got = served.predict([opening, PLANS[0]])
    assert got[0].label == "other" and got[0].scores == sure_other  # not judged
    assert got[1].scores["plans"] == pytest.approx(judge.predict([PLANS[0]])[0].scores["plans"])  # judged
    with_opening = served.fit_temperature([PLANS[0], REVIEW[1], opening], ["plans", "deputy", "plans"])
    without = served.fit_temperature([PLANS[0], REVIEW[1]], ["plans", "deputy"])
    assert with_opening == without  # the encoder's `other`, even a wrong one, is not the judge's to calibrate
    assert served.fit_temperature([opening], ["other"]) == 1.0  # nothing judged: no change


def test_the_judged_scores_are_scaled_by_a_temperature_fitted_alone_that_changes_no_label():
    train = records()
    encoder = BaselinePredictor.fit([r.text for r in train], [r.label for r in train], LABELS, 13, {"labels": LABELS})
    served = PlansJudged(encoder, fit_plans_judge(train, 13))
    texts = PLANS + REVIEW
    before = served.predict(texts)
    temperature = served.fit_temperature([r.text for r in train], [r.label for r in train])
    assert temperature == served.temperature and temperature != 1.0
    after = served.predict(texts)
    assert [p.label for p in after] == [p.label for p in before]
    for b, a in zip(before, after):
        assert sum(a.scores.values()) == pytest.approx(1.0) and a.score == a.scores[a.label]
        assert (a.score > b.score) == (temperature < 1)  # sharper below 1, softer above
    assert calibrate(before[0], LABELS, 1.0).scores == pytest.approx(before[0].scores)  # T = 1 changes nothing
    with pytest.raises(ValueError, match="temperature"):
        PlansJudged(encoder, served.judge, temperature=0)


def test_the_judges_c_reaches_its_logistic_regression():
    """A smaller C regularises harder: smaller weights, a P(plans) nearer one half (bench/cv_scores.py's --c)."""
    default, strict = fit_plans_judge(records(), 13), fit_plans_judge(records(), 13, c=0.01)
    assert abs(strict.coef).sum() < abs(default.coef).sum()
    assert abs(strict.predict([PLANS[0]])[0].scores["plans"] - 0.5) < abs(default.predict([PLANS[0]])[0].scores["plans"] - 0.5)


def test_the_judges_row_weights_set_a_balance_not_its_regularisation():
    """Row weights are scaled to a mean of 1: a corpus of one kind (the default model's, all starter)
    trains as unweighted whatever `plans_judge_starter_weight` is; a mixed one is tilted."""
    train, texts = records(), PLANS + REVIEW
    plain = [v.scores["plans"] for v in fit_plans_judge(train, 13).predict(texts)]
    uniform = [v.scores["plans"] for v in fit_plans_judge(train, 13, sample_weight=[0.5] * len(train)).predict(texts)]
    tilted = [v.scores["plans"] for v in fit_plans_judge(train, 13, sample_weight=[0.2 if r.report_id == "r0" else 1.0 for r in train]).predict(texts)]
    assert uniform == pytest.approx(plain, abs=1e-6)
    assert max(abs(a - b) for a, b in zip(tilted, plain)) > 1e-3


def test_training_weighs_the_judges_starter_rows_by_its_own_setting(monkeypatch):
    """One starter report among real ones: its rows reach the judge at `plans_judge_starter_weight`
    (the encoder's `starter_weight` is another setting)."""
    from model import plans_judge
    from renda.settings import get_settings
    from training import recipes

    starter = sorted(p.stem for p in get_settings().starter_dir.glob("*.txt"))[0]
    train = [r.model_copy(update={"report_id": starter if r.report_id == "r0" else r.report_id}) for r in records()]
    seen = {}

    def spy(records, seed, meta=None, sample_weight=None, tokenizer=None, c=None):
        seen["weights"] = sample_weight
        return fit_plans_judge(records, seed, meta, sample_weight, tokenizer, c)

    monkeypatch.setattr(plans_judge, "fit_plans_judge", spy)
    encoder = BaselinePredictor.fit([r.text for r in train], [r.label for r in train], LABELS, 13, {"labels": LABELS})
    config = load_config(plans_judge_units="chars", starter_weight=1.0, plans_judge_starter_weight=0.25)
    recipes.judge(encoder, train, train, config)
    assert seen["weights"] == [0.25 if r.report_id == starter else 1.0 for r in train]


def test_the_judge_needs_both_sides():
    with pytest.raises(ValueError, match="plans part and of the others"):
        fit_plans_judge([r for r in records() if r.label == "plans"], 13)


def word_tokenizer():
    """A SentencePiece-style (unigram) tokenizer that knows a few words, as e5's does: written for this test."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["主要", "重要", "要", "工作", "加强", "明年", "代表", "建议", "督办", "一年来", "常委会", "今后", "继续", "做好"]
    chars = sorted({c for text in PLANS + REVIEW for c in text} | {c for w in words for c in w})
    tok = Tokenizer(models.Unigram([("<unk>", 0.0), ("▁", -2.0)] + [(w, -1.0) for w in words] + [(c, -8.0) for c in chars], unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_word_ngrams_keep_the_future_yao_apart_from_zhuyao():
    tokenizer = word_tokenizer()
    words = WordPieces(tokenizer)
    text = "明年要加强代表工作，主要工作重要。"
    assert words(text) == ["明年", "要", "加强", "代表", "工作", "，", "主要", "工作", "重要", "。"]
    assert words(text) == [p.lstrip("▁") for p in tokenizer.tokenize(text) if p.strip("▁")]  # the tokenizer's own cut
    grams = words.ngrams("主要工作要加强")
    assert "要" in grams and "主要" in grams and "主要 工作 要" in grams
    assert grams.count("要") == 1  # characters would count 要 twice, once inside 主要


def test_a_judge_of_words_round_trips_and_needs_its_tokenizer(tmp_path):
    words = WordPieces(word_tokenizer())
    judge = fit_plans_judge(records(), 13, tokenizer=words.tokenizer)
    assert judge.info["units"] == "words" and "要" in judge.vocabulary
    assert any(" " in gram for gram in judge.vocabulary)  # word bigrams, joined by a space
    judge.save(tmp_path)
    with pytest.raises(ValueError, match="needs its encoder's tokenizer"):
        BaselinePredictor.load(tmp_path)
    again = BaselinePredictor.load(tmp_path, words=words)
    texts = ["明年要继续做好代表建议督办工作。", "一年来，常委会督办代表建议一百件。"]
    assert [p.scores for p in again.predict(texts)] == [p.scores for p in judge.predict(texts)]
    assert again.predict(texts)[0].scores["plans"] > again.predict(texts)[1].scores["plans"]
    chars = fit_plans_judge(records(), 13)  # no tokenizer: characters, as before
    assert "units" not in chars.info and not any(" " in gram for gram in chars.vocabulary)


@pytest.fixture(scope="module")
def judged_model(tmp_path_factory, starter_dataset, tiny_base):
    out = tmp_path_factory.mktemp("models") / "judged"
    train_bert(starter_dataset, out, str(tiny_base), load_config(**{**TINY_OVERRIDES, "plans_judge": True}), threads=1, progress=False)
    return out


def test_the_judge_round_trips_through_the_model_folder(judged_model):
    meta = json.loads((judged_model / "renda_model.json").read_text(encoding="utf-8"))
    entry = meta["plans_judge"]
    assert set(entry) == {"model", "units", "temperature"} and entry["model"] == JUDGE_DIR and entry["temperature"] > 0
    assert entry["units"] == "words"  # the default: n-grams of the encoder tokenizer's words
    assert (judged_model / JUDGE_DIR / "weights.npz").is_file()
    card = (judged_model / "README.md").read_text(encoding="utf-8")
    assert f"**Plans judge:** a paragraph read alone (no heading path) takes P(plans) from the n-gram model (of the encoder tokenizer's words) in `{JUDGE_DIR}/`" in card
    assert f"scaled by the temperature {entry['temperature']:.2f}" in card
    served = load_predictor(judged_model, backend="torch")
    assert isinstance(served, PlansJudged) and served.temperature == entry["temperature"]
    texts = [PLANS[1], REVIEW[1]]
    got = served.predict(texts, [[], ["三、代表工作"]])
    from model.calibration import calibrated

    encoder = calibrated(BertPredictor.load(judged_model))
    with pytest.raises(ValueError, match="needs its encoder's tokenizer"):
        BaselinePredictor.load(judged_model / JUDGE_DIR)
    judge = BaselinePredictor.load(judged_model / JUDGE_DIR, words=WordPieces(encoder.tokenizer))
    assert judge.info["units"] == "words"
    want = calibrate(judged(encoder.predict(texts[:1])[0], judge.predict(texts[:1])[0].scores["plans"], LABELS), LABELS, entry["temperature"])
    assert np.allclose([got[0].scores[l] for l in LABELS], [want.scores[l] for l in LABELS], atol=1e-6)
    with_path = encoder.predict(texts[1:], [["三、代表工作"]])[0]
    assert np.allclose([got[1].scores[l] for l in LABELS], [with_path.scores[l] for l in LABELS], atol=1e-6)


def test_a_folder_whose_judge_counts_characters_still_loads(judged_model, tmp_path):
    """Folders trained before the judge counted words store no `units`: they load as characters."""
    older = tmp_path / "older"
    shutil.copytree(judged_model, older)
    shutil.rmtree(older / JUDGE_DIR)
    (older / JUDGE_DIR).mkdir()
    chars = fit_plans_judge(records(), 13)
    chars.save(older / JUDGE_DIR)
    served = load_predictor(older, backend="torch")
    assert "units" not in served.judge.info
    assert served.judge.predict(PLANS[:1])[0].scores == chars.predict(PLANS[:1])[0].scores


def test_the_service_shows_the_judge(judged_model):
    from fastapi.testclient import TestClient

    from serving.main import create_app
    from tests.test_service import settings, wait_ready

    with TestClient(create_app(settings(), model_dir=judged_model), raise_server_exceptions=False) as client:
        wait_ready(client)
        assert client.get("/v1/model").json()["plans_judge"]["model"] == JUDGE_DIR


def test_a_bad_judge_entry_refuses_the_folder(judged_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(judged_model, broken)
    meta_path = broken / "renda_model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.write_text(json.dumps({**meta, "plans_judge": {"model": "../elsewhere"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="plans_judge"):
        load_predictor(broken, backend="torch")


def test_serving_the_judge_does_not_import_scikit_learn(judged_model):
    """The judge is an n-gram model whose arithmetic is NumPy: a served folder pulls in neither
    scikit-learn nor SciPy (about 140 MB of a server's memory)."""
    import subprocess
    import sys

    code = ("import sys; from model.backends import load_bert_predictor; from model.loading import as_served; "
            "seen = lambda: sorted(m for m in ('sklearn', 'scipy') if m in sys.modules); "
            f"raw = load_bert_predictor({str(judged_model)!r}, backend='torch'); raw.predict(['明年要加强代表工作。']); "
            "before = seen(); "
            f"p = as_served(raw, {str(judged_model)!r}); p.predict(['明年要加强代表工作。']); "
            "print(type(p).__name__, before == seen(), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "PlansJudged True False"  # nothing the encoder had not imported
