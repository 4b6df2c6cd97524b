"""The reviewer's loop: doubt, reasons, occlusion, the review queue, the admin token, the model swap
under concurrent requests, and retraining from the service on the tiny model. Texts written here."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from model.predictor import Prediction
from model.review import doubt, explain, section_reason, sentences
from renda.labels import LABELS
from serving.main import create_app
from tests.conftest import TINY_OVERRIDES, export_that_fails
from tests.test_service import settings, wait_ready

STARTER = Path(__file__).resolve().parent.parent / "data" / "starter"
PLANTED = "本年度重点监督了全县耕地保护法律法规的实施情况。"
PARAGRAPH = "常委会组成人员认真履职。" + PLANTED + "会议期间代表们积极发言。"


class KeywordModel:
    """A stand-in model: `supervision` at 0.9 when the text has 「监督」, else `other` at 0.6;
    `plans` at 0.95 when the heading path has 「今后」. The id says which instance answered."""

    labels = list(LABELS)

    def __init__(self, model_id: str = "keyword-a", delay: float = 0.0):
        self.model_id, self.delay = model_id, delay
        self.info = {"kind": "test", "test_metrics": {"macro_f1": 0.5}}

    def predict(self, texts, contexts=None):
        time.sleep(self.delay)
        out = []
        for i, text in enumerate(texts):
            path = (contexts or [[]] * len(texts))[i] or []
            top = "plans" if any("今后" in h for h in path) else "supervision" if "监督" in text else "other"
            high = {"plans": 0.95, "supervision": 0.9, "other": 0.6}[top]
            scores = {label: (high if label == top else (1 - high) / (len(LABELS) - 1)) for label in LABELS}
            out.append(Prediction(top, high, scores, 1, bool(path)))
        return out


# --- doubt and reasons ---------------------------------------------------------------------------

def test_doubt_orders_by_margin_and_disagreement():
    sure = {"plans": 0.9, "deputy": 0.05, "other": 0.05}
    torn = {"plans": 0.45, "deputy": 0.4, "other": 0.15}
    flat = {"plans": 0.34, "deputy": 0.33, "other": 0.33}
    assert doubt(sure) == pytest.approx(0.15) and doubt(torn) == pytest.approx(0.95) and doubt(flat) == pytest.approx(0.99)
    assert doubt(sure) < doubt(torn) < doubt(flat)
    # the paragraph's own label against its section's: halfway to 1
    assert doubt(sure, section_label="deputy") == pytest.approx(0.575)
    assert doubt(sure, section_label="plans") == doubt(sure)
    ranked = sorted([("sure", sure, None), ("flat", flat, None), ("sure-but-other-section", sure, "other"), ("torn", torn, None)],
                    key=lambda item: -doubt(item[1], section_label=item[2]))
    assert [name for name, _, _ in ranked] == ["flat", "torn", "sure-but-other-section", "sure"]


def test_section_reasons_in_words():
    assert section_reason("一、坚持党的领导", "leadership", "heading", "leadership", "heading", 3) == \
        "heading rule: 「一、坚持党的领导」 names leadership (keyword 「党的领导」)"
    assert "plans part" in section_reason("二、2025年主要任务", "plans", "part", "plans", "heading", 4)
    assert section_reason("三、其他", "deputy", "keywords", "supervision", "vote", 5) == \
        "the model's vote: its 5 paragraphs' predictions together, overruling the rules' deputy"
    assert "had no label" in section_reason("三、其他", None, None, "other", "vote", 2)


def test_a_report_carries_doubt_and_reasons(client):
    text = "各位代表：\n一、坚持党的领导\n常委会党组认真落实请示报告制度。\n二、依法履行监督职责\n听取审议县政府专项工作报告。\n" \
           "开展执法检查三次，依法监督。"
    body = client.post("/v1/reports", json={"text": text}).json()
    for p in body["paragraphs"]:
        assert p["doubt"] == doubt(p["scores"], p["label"], p["section_label"])
    for s in body["sections"]:
        assert s["reason"] and s["doubt"] == max(p["doubt"] for p in body["paragraphs"][s["first"]: s["last"] + 1])
    assert body["sections"][2]["reason"].startswith("heading rule: 「二、依法履行监督职责」 names supervision")
    # the stand-in reads 「一、坚持党的领导」's paragraphs as `other`: the vote overrules the rule, and says so
    assert body["sections"][1]["reason"] == "the model's vote: its 2 paragraphs' predictions together, overruling the rules' leadership"


# --- occlusion -------------------------------------------------------------------------------------

def test_sentences_give_the_paragraph_back():
    assert sentences(PARAGRAPH) == ["常委会组成人员认真履职。", PLANTED, "会议期间代表们积极发言。"]
    assert sentences("没有句号的一段") == ["没有句号的一段"]
    assert "".join(sentences("他说：“好。”然后走了；再见！")) == "他说：“好。”然后走了；再见！"


def test_occlusion_finds_the_planted_sentence():
    result = explain(KeywordModel(), PARAGRAPH)
    assert result["label"] == "supervision" and result["reason"]["text"] == PLANTED
    assert result["reason"]["start"] == PARAGRAPH.index(PLANTED) and result["reason"]["effect"] > 0.2
    others = [p for p in result["parts"] if p["text"] != PLANTED]
    assert all(abs(p["effect"]) < 1e-6 for p in others)


def test_occlusion_finds_the_heading_that_decides():
    result = explain(KeywordModel(), "召开座谈会一次。听取意见建议。", ["今后工作安排", "一、重点工作"])
    assert result["label"] == "plans" and result["reason"] == {
        "kind": "heading", "index": 0, "text": "今后工作安排", "start": None, "effect": result["reason"]["effect"]}
    assert result["reason"]["effect"] > 0.3


def test_explain_endpoint(client):
    response = client.post("/v1/explain", json={"text": PARAGRAPH, "heading_path": ["二、依法履行监督职责"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "keyword-a" and body["reason"]["text"] == PLANTED
    assert [p["kind"] for p in body["parts"]] == ["sentence"] * 3 + ["heading"]
    assert client.post("/v1/explain", json={"text": PARAGRAPH, "label": "nope"}).status_code == 422
    assert client.post("/v1/explain", json={"text": "no chinese"}).status_code == 422


def test_the_occlusion_size_is_counted_as_the_variants_would_read():
    from model.review import occlusion_size, occlusion_variants

    for text, path in (("审议。" * 60, []), ("召开座谈会一次。听取意见。", ["今后工作", "一、重点"]), ("一句话", ["一、立法"])):
        variants = occlusion_variants(text, path)
        assert occlusion_size(text, path) == (len(variants), sum(len(t) for t, _ in variants))


def test_an_explanation_that_would_read_too_much_is_refused_before_the_model_runs():
    """Occlusion reads the paragraph once per sentence: many short sentences make it quadratic, so its
    total is held to MAX_EXPLAIN_CHARS (413, nothing predicted); within the limit it is explained."""
    calls = []

    class Counting(KeywordModel):
        def predict(self, texts, contexts=None):
            calls.append(len(texts))
            return super().predict(texts, contexts)

    many = "审议。" * 60  # 180 characters, 60 sentences: 61 readings of about 180 characters
    with TestClient(create_app(settings(max_explain_chars=5_000), load=Counting), raise_server_exceptions=False) as c:
        wait_ready(c)
        calls.clear()  # the readiness probe
        response = c.post("/v1/explain", json={"text": many})
        assert response.status_code == 413 and calls == []
        detail = response.json()["detail"]
        assert "61 times" in detail and "10,800 characters" in detail and "the limit is 5,000" in detail
        assert c.post("/v1/explain", json={"text": "审议。" * 20}).status_code == 200 and sum(calls) == 21
        assert c.get("/v1/model").json()["limits"]["max_explain_chars"] == 5_000


# --- the service, with a stand-in model --------------------------------------------------------------

TOKEN = "a-long-admin-token"


@pytest.fixture
def client(tmp_path):
    app = create_app(settings(corrections_dir=tmp_path / "corrections", admin_token=TOKEN), load=lambda: KeywordModel())
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


ROW = {"report_id": "cuiping-2025", "text": "听取审议县政府专项工作报告。", "label": "supervision"}


def test_write_actions_need_the_token(client, tmp_path):
    for headers in ({}, {"authorization": "Bearer wrong-token-here"}, {"authorization": TOKEN}):
        response = client.post("/v1/corrections", json={"records": [ROW]}, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", response.text
        assert response.json()["errors"][0]["field"] == "authorization"
        assert client.post("/v1/retrain", headers=headers).status_code == 401
        bad = client.post("/v1/corrections", json={"records": [{**ROW, "label": "nope"}]}, headers=headers)
        assert bad.status_code == 401  # the token before the body: no word on what the checks are
    assert not (tmp_path / "corrections").exists()  # nothing written
    assert client.get("/v1/retrain").json()["status"] == "idle"  # nothing started
    # settings sent to retrain would not apply: refused with a reason, and nothing starts
    refused = client.post("/v1/retrain", json={"epochs": 2}, headers={"authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 422 and [e["field"] for e in refused.json()["errors"]] == ["body"]
    assert "takes no body" in refused.json()["errors"][0]["message"]
    assert client.post("/v1/retrain", json={"epochs": 2}).status_code == 401  # the token first
    assert client.get("/v1/retrain").json()["status"] == "idle"
    ok = client.post("/v1/corrections", json={"records": [ROW]}, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 201 and (tmp_path / "corrections" / "cuiping-2025.jsonl").is_file()
    # labelling stays open
    assert client.post("/v1/classify", json={"paragraphs": ["依法开展监督。"]}).status_code == 200


def test_the_swap_under_concurrent_requests(tmp_path):
    """Requests in flight finish on the old model, later ones get the new one, nothing fails, and a
    whole report is answered by one model."""
    app = create_app(settings(max_batch_paragraphs=2), load=lambda: KeywordModel("keyword-a", delay=0.01))
    report = "\n".join(["一、依法履行监督职责"] + [f"开展第{i}次执法检查，加强监督。" for i in range(12)])
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        service = app.state.service

        def post(i: int) -> tuple[float, str, set[str]]:
            if i % 3 == 0:
                body = c.post("/v1/reports", json={"text": report}).json()
                return time.monotonic(), body["model"], {body["model"]}
            body = c.post("/v1/classify", json={"paragraphs": [f"第{i}段，依法监督。"] * 3}).json()
            return time.monotonic(), body["model"], {body["model"]}

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(post, i) for i in range(60)]
            time.sleep(0.2)
            swapped_at = time.monotonic()
            service.swap(KeywordModel("keyword-b", delay=0.01))
            results = [f.result() for f in futures]
        assert {model for _, model, _ in results} == {"keyword-a", "keyword-b"}
        assert all(len(models) == 1 for _, _, models in results)
        assert all(model == "keyword-b" for at, model, _ in results if at > swapped_at + 2.0)
        assert c.post("/v1/classify", json={"paragraphs": ["监督。"]}).json()["model"] == "keyword-b"
        assert c.get("/v1/model").json()["model"] == "keyword-b"


# --- the review queue --------------------------------------------------------------------------------

def test_the_review_queue_of_an_archive(tmp_path, capsys):
    from apps.archive import label_archive, review_queue
    from apps.cli import main

    root = tmp_path / "archive"
    root.mkdir()
    (root / "cuiping-2025.txt").write_text("翠屏县人大常委会工作报告\n一、依法履行监督职责\n开展执法检查，加强监督。\n"
                                           "组织代表视察。\n二、其他工作\n召开座谈会。", encoding="utf-8")
    (root / "baiyun-2024.txt").write_text("白云县人大常委会工作报告\n一、坚持党的领导\n依法监督政府工作。\n学习交流。", encoding="utf-8")
    label_archive(root, tmp_path / "out", KeywordModel(), progress=False)
    queue = review_queue(tmp_path / "out", 4)
    assert len(queue) == 4 and [r["doubt"] for r in queue] == sorted((r["doubt"] for r in queue), reverse=True)
    everything = review_queue(tmp_path / "out", 100)
    assert queue == everything[:4] and min(r["doubt"] for r in queue) >= max(r["doubt"] for r in everything[4:])
    assert set(queue[0]) == {"report_path", "report_id", "position", "text", "label", "section_label", "score", "doubt"}
    assert main(["review-queue", str(tmp_path / "out"), "--top", "3", "--out", str(tmp_path / "queue.csv")]) == 0
    lines = (tmp_path / "queue.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "report_path,report_id,position,text,label,section_label,score,doubt" and len(lines) == 4
    assert main(["review-queue", str(tmp_path / "out"), "--top", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == [r["text"] for r in queue[:2]]
    assert main(["review-queue", str(tmp_path / "nothing")]) == 2


# --- retraining from the service, on the tiny model ----------------------------------------------------

def retrain_settings(tmp_path: Path, tiny_base: Path, **extra):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in sorted(STARTER.glob("*.txt"))[:10]:
        shutil.copy(path, corpus / path.name)
    overrides = [f"{k}={v}" for k, v in TINY_OVERRIDES.items()]
    values = dict(corrections_dir=tmp_path / "corrections", admin_token=TOKEN, retrain_corpus=[str(corpus)],
                  retrain_set=overrides, retrain_export=False, base_model=str(tiny_base), build_dir=tmp_path / "build", threads=1)
    return settings(**(values | extra))


def wait_retrain(client: TestClient, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        state = client.get("/v1/retrain").json()
        seen.append(state)
        if state["status"] in ("done", "failed"):
            return state | {"seen": seen}
        time.sleep(0.3)
    pytest.fail(f"the retrain did not finish within {timeout} s: {seen[-1]}")


def test_retrain_from_the_service_swaps_in_the_new_model(tmp_path, tiny_model, tiny_base):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    app = create_app(retrain_settings(tmp_path, tiny_base), model_dir=model_dir)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        old = c.get("/v1/model").json()["model"]
        assert c.post("/v1/corrections", json={"records": [ROW]}, headers=auth).status_code == 201
        started = c.post("/v1/retrain", headers=auth)
        assert started.status_code == 202 and started.json()["status"] == "running", started.text
        assert started.json()["old"]["model"] == old and started.json()["corrections_files"] == 1
        assert c.post("/v1/retrain", headers=auth).status_code == 409  # one at a time
        state = wait_retrain(c)
        assert state["status"] == "done", state
        new = c.get("/v1/model").json()["model"]
        assert new != old and state["new"]["model"] == new and state["old"]["model"] == old
        assert state["new"]["held_out_metrics"] and state["minutes"] > 0
        assert any(s.get("epoch") for s in state["seen"]) or state["epochs"] == 1
        assert c.post("/v1/classify", json={"paragraphs": ["依法监督。"]}).json()["model"] == new
    assert len(list((tmp_path / "build").glob("retrain-*"))) == 1  # the dataset went to the service's build folder


def test_a_retrain_whose_export_fails_replaces_nothing(tmp_path, tiny_model, tiny_base, monkeypatch):
    """The new model is trained and exported in staging and published only when both finished: an
    export that fails half way (a file written, then an error) leaves the old folder as it was."""
    import training.export
    from training.pipeline import run_retrain

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    corpus = retrain_settings(tmp_path, tiny_base).retrain_corpus
    exported = []
    monkeypatch.setattr(training.export, "run_export", export_that_fails(exported))
    with pytest.raises(RuntimeError, match="export stopped"):
        run_retrain(corpus, tmp_path / "corrections", model_dir, str(tiny_base), tmp_path / "build", threads=1, **TINY_OVERRIDES)
    assert exported and exported[0].parent != model_dir.parent  # it ran in the staging folder, not on the model
    assert {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".model")) == []  # no staging left behind
    monkeypatch.setattr(training.export, "run_export", lambda folder, data, threads: exported.append(Path(folder)))
    run_retrain(corpus, tmp_path / "corrections", model_dir, str(tiny_base), tmp_path / "build", threads=1, **TINY_OVERRIDES)
    meta = json.loads((model_dir / "renda_model.json").read_text(encoding="utf-8"))
    assert meta["model_id"].startswith("model-") and meta["model_id"] != json.loads(before["renda_model.json"])["model_id"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".model")) == []


def test_a_failed_retrain_leaves_the_model_serving(tmp_path, tiny_model, tiny_base):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in model_dir.iterdir())
    app = create_app(retrain_settings(tmp_path, tiny_base, retrain_corpus=[str(tmp_path / "nowhere")]), model_dir=model_dir)
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        old = c.get("/v1/model").json()["model"]
        assert c.post("/v1/retrain", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 202
        state = wait_retrain(c, 120)
        assert state["status"] == "failed" and "served model is unchanged" in state["message"]
        assert c.get("/v1/model").json()["model"] == old
        assert c.post("/v1/classify", json={"paragraphs": ["依法监督。"]}).status_code == 200
    assert sorted((p.name, p.stat().st_mtime_ns) for p in model_dir.iterdir()) == before
