"""The HTTP service, end to end: the real app (middleware, error handlers, lifespan, batcher) on the
tiny model from conftest, through Starlette's TestClient."""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from model.context import MAX_HEADING_CHARS, MAX_PATH_ITEMS, heading_path_of
from model.loading import load_predictor
from renda.labels import LABELS, load_rules
from renda.parsing import parse_report
from renda.settings import Settings
from serving.main import create_app

MAX_PARAGRAPHS = 8
MAX_PARAGRAPH_CHARS = 300
MAX_REPORT_CHARS = 5_000
MAX_BODY_BYTES = 64_000
JSON = {"content-type": "application/json"}

# Paragraphs of different lengths, so the predictor's sort-by-length reorders them inside a batch.
PARAGRAPHS = [
    "常委会党组坚持把党的领导贯穿人大工作全过程。",
    "审议通过地方性法规两件。",
    "围绕义务教育均衡发展开展专题调研，听取审议县政府专项工作报告，提出意见建议十二条，跟踪督办落实情况，推动解决一批群众关心的实际问题。",
    "组织代表开展集中视察活动三次，邀请代表列席常委会会议四十人次。",
    "加强机关干部队伍建设。",
]


def settings(**overrides) -> Settings:
    values = dict(max_paragraphs=MAX_PARAGRAPHS, max_paragraph_chars=MAX_PARAGRAPH_CHARS, max_report_chars=MAX_REPORT_CHARS,
                  max_body_bytes=MAX_BODY_BYTES, batch_wait_ms=20, max_batch_paragraphs=64, threads=1)
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 503, response.text
        time.sleep(0.05)
    pytest.fail(f"the service was not ready within {timeout} s: {client.get('/readyz').text}")


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(settings(), model_dir=tiny_model), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def direct(tiny_model):
    """The same model, called without the service."""
    return load_predictor(tiny_model)


def classify(client: TestClient, paragraphs: list, **extra) -> dict:
    response = client.post("/v1/classify", json={"paragraphs": paragraphs, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def assert_distribution(scores: dict) -> None:
    assert list(scores) == LABELS
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-4)


def assert_same(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a["label"] == b["label"]
    assert abs(a["score"] - b["score"]) <= tol
    for label in LABELS:
        assert abs(a["scores"][label] - b["scores"][label]) <= tol


# --- health, readiness, metadata ---------------------------------------------------------------


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["model"]
    for path in ("/healthz", "/readyz"):  # probes that send HEAD
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"x-request-id": "abc123"}).headers["x-request-id"] == "abc123"
    assert client.get("/healthz").headers["x-request-id"]
    # the body limit's own answers too (they come before the app, and once came without it)
    too_big = raw(client, "/v1/classify", b"x" * (MAX_BODY_BYTES + 1), {**JSON, "x-request-id": "big1"})
    assert too_big.status_code == 413 and too_big.headers["x-request-id"] == "big1"
    wrong_type = raw(client, "/v1/classify", b"x", {"content-type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.headers["x-request-id"]


def test_labels(client):
    response = client.get("/v1/labels")
    assert response.status_code == 200
    labels = response.json()["labels"]
    assert [item["id"] for item in labels] == LABELS and len(labels) == 7
    rules = {label.id: label for label in load_rules().labels}
    for item in labels:
        assert item["zh"] == rules[item["id"]].zh and item["description"]


def test_model_info(client, direct):
    response = client.get("/v1/model")
    assert response.status_code == 200
    info = response.json()
    assert info["model"] == direct.model_id == client.get("/readyz").json()["model"]
    assert info["kind"] == "bert"
    assert info["label2id"] == {label: i for i, label in enumerate(LABELS)}
    assert info["limits"] == {"max_paragraphs": MAX_PARAGRAPHS, "max_paragraph_chars": MAX_PARAGRAPH_CHARS,
                              "max_report_chars": MAX_REPORT_CHARS, "max_body_bytes": MAX_BODY_BYTES,
                              "max_queue_paragraphs": Settings().max_queue_paragraphs, "max_explain_chars": Settings().max_explain_chars}
    assert info["base_model"] == direct.info.get("base_model")
    assert info["trained_at"] == direct.info.get("trained_at")
    assert isinstance(info["held_out_metrics"], dict)
    assert info["held_out_metrics"] == (direct.info.get("test_metrics") or {})


def test_openapi_lists_the_contract(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/classify", "/v1/reports", "/v1/labels", "/v1/model", "/healthz", "/readyz"):
        assert path in paths


# --- /v1/classify ------------------------------------------------------------------------------


def test_classify_one_result_per_paragraph_in_order(client, direct):
    body = classify(client, PARAGRAPHS, top_k=3)
    assert body["model"] == direct.model_id
    results = body["results"]
    assert len(results) == len(PARAGRAPHS)
    expected = direct.predict(PARAGRAPHS)
    for result, want in zip(results, expected):
        assert set(result) == {"label", "score", "scores", "top", "windows", "context", "doubt"}
        assert result["context"] is False
        assert result["label"] in LABELS
        assert_distribution(result["scores"])
        assert result["score"] == pytest.approx(max(result["scores"].values()), abs=1e-6)
        assert result["scores"][result["label"]] == pytest.approx(result["score"], abs=1e-6)
        assert result["windows"] >= 1
        assert_same(result, {"label": want.label, "score": want.score, "scores": want.scores})


def test_classify_batch_equals_each_alone(client):
    together = classify(client, PARAGRAPHS)["results"]
    for text, result in zip(PARAGRAPHS, together):
        [alone] = classify(client, [text])["results"]
        assert_same(result, alone)
    # Reversed order: the results follow the paragraphs, not the positions.
    backwards = classify(client, PARAGRAPHS[::-1])["results"]
    for result, want in zip(backwards, together[::-1]):
        assert_same(result, want)


def test_classify_repeated_paragraph(client):
    results = classify(client, [PARAGRAPHS[0], PARAGRAPHS[2], PARAGRAPHS[0]])["results"]
    assert len(results) == 3
    assert_same(results[0], results[2])


def test_classify_object_paragraphs_on_the_real_model(client, direct):
    """The tiny model reads the heading path of an object paragraph (the same as the predictor called
    directly with it), and a string beside it without one."""
    text, path = PARAGRAPHS[2], ["二、2025年主要任务", "（三）依法履行监督职责"]
    plain, with_path, with_heading = classify(client, [text, {"text": text, "heading_path": path},
                                                       {"text": text, "heading": path[-1]}])["results"]
    assert [r["context"] for r in (plain, with_path, with_heading)] == [False, True, True]
    [want_plain], [want_path], [want_heading] = (direct.predict([text]), direct.predict([text], [path]),
                                                  direct.predict([text], [path[-1:]]))
    assert (want_plain.context, want_path.context, want_heading.context) == (False, True, True)
    for result, want in ((plain, want_plain), (with_path, want_path), (with_heading, want_heading)):
        assert_same(result, {"label": want.label, "score": want.score, "scores": want.scores})
        assert_distribution(result["scores"])
    assert with_path["scores"] != plain["scores"] and with_path["scores"] != with_heading["scores"]  # the path was read


@pytest.mark.parametrize("top_k", [1, 3, 7])
def test_top_k(client, top_k):
    [result] = classify(client, [PARAGRAPHS[2]], top_k=top_k)["results"]
    top = result["top"]
    assert len(top) == top_k
    values = [score for _, score in top]
    assert values == sorted(values, reverse=True)
    assert top[0][0] == result["label"]
    for label, score in top:
        assert result["scores"][label] == pytest.approx(score)
    if top_k == 7:
        assert sorted(label for label, _ in top) == sorted(LABELS)


def test_top_k_defaults_to_three(client):
    [result] = classify(client, [PARAGRAPHS[1]])["results"]
    assert len(result["top"]) == 3


def test_long_paragraph_uses_several_windows(client):
    # The tiny model reads 32 tokens a window; this is ~200 characters, well under the limit.
    text = "常委会听取审议县政府关于生态环境保护工作情况的报告，" * 8
    assert len(text) <= MAX_PARAGRAPH_CHARS
    [result] = classify(client, [text])["results"]
    assert result["windows"] > 1
    assert_distribution(result["scores"])


def test_exactly_the_limits_are_accepted(client):
    results = classify(client, [PARAGRAPHS[i % len(PARAGRAPHS)] for i in range(MAX_PARAGRAPHS)])["results"]
    assert len(results) == MAX_PARAGRAPHS
    classify(client, ["审" * MAX_PARAGRAPH_CHARS])


def test_concurrent_requests_get_their_own_results(client):
    alone = {text: classify(client, [text])["results"][0] for text in PARAGRAPHS}
    # Each request a different mix, so a batcher that mixed requests up would hand back wrong results.
    requests = [[PARAGRAPHS[(i + j) % len(PARAGRAPHS)] for j in range(1 + i % 4)] for i in range(16)]

    def send(paragraphs):
        return paragraphs, client.post("/v1/classify", json={"paragraphs": paragraphs, "top_k": 2})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, requests))
    for paragraphs, response in answers:
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == len(paragraphs)
        for text, result in zip(paragraphs, results):
            assert_same(result, alone[text])
            assert len(result["top"]) == 2


def recorded_label(text: str, path: list[str] | None = None) -> str:
    """What Recording answers: a label from the text and its heading path."""
    return LABELS[(sum(map(ord, text)) + sum(map(ord, "›".join(path or [])))) % len(LABELS)]


class Recording:
    """A stand-in model whose answer depends only on the text and its context, and that records
    every batch it is given (texts in `calls`, contexts, None when none were passed, in `contexts`)."""

    labels, model_id, info = LABELS, "recording", {}

    def __init__(self):
        self.calls: list[list[str]] = []
        self.contexts: list[list[list[str]] | None] = []
        self.lock = threading.Lock()

    def predict(self, texts, contexts=None):
        from model.predictor import Prediction

        with self.lock:
            self.calls.append(list(texts))
            self.contexts.append(None if contexts is None else [list(c) for c in contexts])
        out = []
        for text, path in zip(texts, contexts or [[]] * len(texts)):
            label = recorded_label(text, path)
            scores = {l: (0.4 if l == label else 0.1) for l in LABELS}
            out.append(Prediction(label, 0.4, scores, windows=len(text), context=bool(path)))
        return out


@contextmanager
def recording_client(model: Recording | None = None, **overrides):
    """The real app on a Recording model: (client, model)."""
    model = model or Recording()
    with TestClient(create_app(settings(**overrides), load=lambda: model), raise_server_exceptions=False) as c:
        wait_ready(c, timeout=10)
        yield c, model


def test_batcher_batches_requests_and_hands_each_its_own():
    with recording_client(batch_wait_ms=200, max_batch_paragraphs=64) as (c, model):
        requests = [[f"第{i}件第{j}段人大工作" + "。" * i for j in range(1 + i % 3)] for i in range(12)]
        barrier = threading.Barrier(len(requests))

        def send(paragraphs):
            barrier.wait()
            return c.post("/v1/classify", json={"paragraphs": paragraphs, "top_k": 1})

        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            responses = list(pool.map(send, requests))
    for paragraphs, response in zip(requests, responses):
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["windows"] for r in results] == [len(t) for t in paragraphs]
        assert [r["label"] for r in results] == [recorded_label(t) for t in paragraphs]
        assert not any(r["context"] for r in results)
    batches = model.calls[1:]  # the first call is the start-up probe
    assert sum(len(b) for b in batches) == sum(len(r) for r in requests)
    assert len(batches) < len(requests), "concurrent requests were never batched together"
    assert model.contexts[1:] == [None] * len(batches)  # no request sent context: the plain call


# --- /v1/classify with context: strings, objects, mixed ----------------------------------------

PART, SECTION = "二、2025年主要任务", "（三）依法履行监督职责"


def test_classify_strings_objects_and_mixed():
    objects = [{"text": PARAGRAPHS[2], "heading": SECTION, "heading_path": [PART]},  # heading appended to the path
               {"text": PARAGRAPHS[3], "heading_path": [PART, SECTION]},
               {"text": PARAGRAPHS[1], "heading": "Part II: legislation"},  # headings need no Chinese
               {"text": PARAGRAPHS[0]},  # an object without context is read as a string is
               {"text": PARAGRAPHS[4], "heading": "", "heading_path": []}]
    paths = [[PART, SECTION], [PART, SECTION], ["Part II: legislation"], [], []]
    mixed = [PARAGRAPHS[0], objects[0], PARAGRAPHS[1], objects[2]]
    with recording_client() as (c, model):
        strings = classify(c, PARAGRAPHS)["results"]
        assert [r["context"] for r in strings] == [False] * len(PARAGRAPHS)
        assert [r["label"] for r in strings] == [recorded_label(t) for t in PARAGRAPHS]
        assert model.contexts[-1] is None

        results = classify(c, objects, top_k=2)["results"]
        assert model.calls[-1] == [o["text"] for o in objects]
        assert model.contexts[-1] == paths
        assert [r["context"] for r in results] == [True, True, True, False, False]
        assert [r["label"] for r in results] == [recorded_label(o["text"], path) for o, path in zip(objects, paths)]
        assert all(len(r["top"]) == 2 for r in results)

        results = classify(c, mixed)["results"]
        assert model.calls[-1] == [PARAGRAPHS[0], PARAGRAPHS[2], PARAGRAPHS[1], PARAGRAPHS[1]]
        assert model.contexts[-1] == [[], [PART, SECTION], [], ["Part II: legislation"]]
        assert [r["context"] for r in results] == [False, True, False, True]
        assert [r["label"] for r in results] == [recorded_label(t, path) for t, path in zip(model.calls[-1], model.contexts[-1])]

        classify(c, [{"text": PARAGRAPHS[0]}, {"text": PARAGRAPHS[1], "heading": " "}])
        assert model.contexts[-1] is None  # objects without context: the plain call


def test_contexts_stay_aligned_across_batched_requests():
    """The same texts under different headings, from concurrent requests gathered into one batch:
    each paragraph reaches the model with its own request's context, and each request gets its own answers."""
    texts = PARAGRAPHS[:3]
    requests = [
        [{"text": t, "heading_path": [PART, f"（{i}）监督"]} for i, t in enumerate(texts)],
        [{"text": t, "heading": "一、过去一年的主要工作"} for t in texts[::-1]],
        list(texts),  # a string-only request in the same batch
        [texts[0], {"text": texts[1], "heading_path": ["三、其他"], "heading": "（一）代表工作"}],
    ]
    sent = {(p if isinstance(p, str) else p["text"],
             tuple([] if isinstance(p, str) else heading_path_of(p.get("heading"), p.get("heading_path"))))
            for request in requests for p in request}
    with recording_client(batch_wait_ms=300) as (c, model):
        barrier = threading.Barrier(len(requests))

        def send(paragraphs):
            barrier.wait()
            return c.post("/v1/classify", json={"paragraphs": paragraphs})

        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            responses = list(pool.map(send, requests))
    for request, response in zip(requests, responses):
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        want = [(p, []) if isinstance(p, str) else (p["text"], heading_path_of(p.get("heading"), p.get("heading_path")))
                for p in request]
        assert [r["label"] for r in results] == [recorded_label(t, path) for t, path in want]
        assert [r["context"] for r in results] == [bool(path) for _, path in want]
    batches = list(zip(model.calls[1:], model.contexts[1:]))
    assert sum(len(texts) for texts, _ in batches) == sum(len(r) for r in requests)
    assert any(len(texts) > max(map(len, requests)) for texts, _ in batches), "the requests were never batched together"
    for batch_texts, batch_contexts in batches:
        assert batch_contexts is not None and len(batch_contexts) == len(batch_texts)
        assert {(t, tuple(c)) for t, c in zip(batch_texts, batch_contexts)} <= sent


def test_batcher_passes_contexts_only_when_a_job_has_them():
    from serving.service import Batcher

    model = Recording()
    batcher = Batcher(model.predict, wait_ms=1, max_paragraphs=8)
    try:
        batcher.submit(["人大工作"])
        assert model.contexts[-1] is None
        [prediction] = batcher.submit(["人大工作"], [[PART]])
        assert model.contexts[-1] == [[PART]] and prediction.context
        with pytest.raises(ValueError, match="2 contexts for 1 texts"):
            batcher.submit(["人大工作"], [[PART], []])
    finally:
        batcher.close()


def test_openapi_shows_both_paragraph_forms_with_examples():
    with recording_client() as (c, _):
        spec = c.get("/openapi.json").json()
        body = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]
        schemas = spec["components"]["schemas"]
        request = schemas[body["schema"]["$ref"].rsplit("/", 1)[-1]]
        forms = request["properties"]["paragraphs"]["items"]["anyOf"]
        assert {"type": "string"} in forms
        ref = next(f["$ref"] for f in forms if "$ref" in f)
        item = schemas[ref.rsplit("/", 1)[-1]]
        assert set(item["properties"]) == {"text", "heading", "heading_path"} and item["required"] == ["text"]
        assert item["additionalProperties"] is False
        assert item["properties"]["heading_path"]["anyOf"][0]["maxItems"] == MAX_PATH_ITEMS
        assert item["properties"]["heading_path"]["anyOf"][0]["items"]["maxLength"] == MAX_HEADING_CHARS
        for name in ("context", "heading_path", "source"):
            assert "description" in (schemas["ParagraphResult"] if name == "context" else schemas["ReportParagraph"])["properties"][name]
        examples = body["examples"]
        assert set(examples) == {"strings", "objects", "mixed"}
        kinds = {name: {type(p).__name__ for p in example["value"]["paragraphs"]} for name, example in examples.items()}
        assert kinds == {"strings": {"str"}, "objects": {"dict"}, "mixed": {"str", "dict"}}
        assert len(request["examples"]) == 3
        for example in examples.values():  # every example is a valid request
            response = c.post("/v1/classify", json=example["value"])
            assert response.status_code == 200, response.text
            assert [r["context"] for r in response.json()["results"]] == [isinstance(p, dict) for p in example["value"]["paragraphs"]]
        docs = c.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_a_closed_batcher_refuses_instead_of_hanging():
    from serving.service import Batcher, ModelNotReady

    batcher = Batcher(Recording().predict, wait_ms=1, max_paragraphs=8)
    assert [p.label for p in batcher.submit(["人大工作"])] == [Recording().predict(["人大工作"])[0].label]
    batcher.close()
    outcome: list = []

    def submit():
        try:
            outcome.append(batcher.submit(["人大工作"]))
        except ModelNotReady as error:
            outcome.append(error)

    thread = threading.Thread(target=submit, daemon=True)  # a daemon: a hang fails the test, not the run
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "submit() after close() never returned"
    assert isinstance(outcome[0], ModelNotReady)


def test_a_restarted_app_is_not_ready_until_it_has_loaded_again():
    """Lifespan shutdown then start-up again (a TestClient opened twice; schemathesis does it between
    tests): while the model reloads, requests get a 503, never a request that hangs on the stopped batcher."""
    model, release, starts = Recording(), threading.Event(), []

    def load():
        starts.append(1)
        if len(starts) > 1:
            assert release.wait(30)
        return model

    app = create_app(settings(), load=load)
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c, timeout=10)
        assert classify(c, [OK])["model"] == "recording"
    assert not app.state.service.ready.is_set()
    with TestClient(app, raise_server_exceptions=False) as c:
        try:
            assert not app.state.service.ready.is_set()  # were it still set, the request below would hang
            assert c.get("/readyz").status_code == 503
            busy = c.post("/v1/classify", json={"paragraphs": [OK]})
            assert busy.status_code == 503, busy.text
        finally:
            release.set()
        wait_ready(c, timeout=10)
        assert len(classify(c, PARAGRAPHS)["results"]) == len(PARAGRAPHS)


# --- /v1/reports -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(client, sample_report):
    assert len(sample_report) <= MAX_REPORT_CHARS
    response = client.post("/v1/reports", json={"text": sample_report})
    assert response.status_code == 200, response.text
    return response.json()


def test_report_shape(report, direct, sample_report):
    assert report["model"] == direct.model_id
    paragraphs = report["paragraphs"]
    assert len(paragraphs) == len(parse_report(sample_report))
    for i, p in enumerate(paragraphs):
        assert p["index"] == i
        assert p["text"].strip() == p["text"] and p["text"]
        assert p["label"] in LABELS
        assert_distribution(p["scores"])
        assert p["scores"][p["label"]] == pytest.approx(p["score"], abs=1e-6)
        assert p["windows"] >= 1
        assert isinstance(p["heading_path"], list) and all(isinstance(h, str) and h for h in p["heading_path"])
        assert p["context"] is bool(p["heading_path"])  # every paragraph is read with its heading path
        assert p["source"] in {"heading", "model", "vote"}
    assert any(p["context"] for p in paragraphs)
    assert not paragraphs[0]["context"]  # the preamble has no heading above it


def test_report_joins_the_cut_line(report):
    texts = [p["text"] for p in report["paragraphs"]]
    joined = [t for t in texts if "全县" in t and "农村自来水普及率" in t]
    assert len(joined) == 1
    assert "全县农村自来水普及率提高到百分之九十六。" in joined[0]
    assert joined[0].startswith("听取审议县政府关于预算执行")
    assert not any(t.startswith("农村自来水普及率") for t in texts)


def test_report_headings(report):
    by_text = {p["text"]: p for p in report["paragraphs"]}
    # Level 1: numbered 一、… and the bare part headings.
    for heading in ("过去一年的主要工作", "一、坚持党的领导，把牢人大工作正确政治方向", "二、聚焦发展大局，推动县委部署落地见效",
                    "三、服务代表履职，发挥代表主体作用", "四、加强自身建设", "2024年主要任务"):
        assert by_text[heading]["is_heading"] is True, heading
        assert by_text[heading]["heading"] == heading
    # Level 2: （一） sub-headings fused with their paragraph are body text, inside their section.
    fused = {p["text"]: p for p in report["paragraphs"] if p["text"].startswith(("（一）", "（二）", "(一)"))}
    assert len(fused) == 3
    for p in fused.values():
        assert p["is_heading"] is False
    assert [p["heading"] for p in fused.values()] == ["一、坚持党的领导，把牢人大工作正确政治方向"] * 2 + ["四、加强自身建设"]
    # The plans part is one section; the closing appeal and the page furniture after it are another.
    plans = [p for p in report["paragraphs"] if p["heading"] == "2024年主要任务"]
    assert [p["text"][:4] for p in plans] == ["2024", "——紧扣", "——支持"]
    closing = report["paragraphs"][-3:]
    assert [p["heading"] for p in closing] == ["", "", ""] and closing[0]["text"].startswith("各位代表！")
    # Body paragraphs are not headings and sit under the section above them.
    body = next(p for p in report["paragraphs"] if p["text"].startswith("新建代表联络站"))
    assert body["is_heading"] is False and body["heading"] == "三、服务代表履职，发挥代表主体作用"
    cut = next(p for p in report["paragraphs"] if "农村自来水普及率" in p["text"])
    assert cut["is_heading"] is False and cut["heading"] == "二、聚焦发展大局，推动县委部署落地见效"


def test_report_sections_cover_every_paragraph(report):
    sections, paragraphs = report["sections"], report["paragraphs"]
    assert sections and sections[0]["first"] == 0 and sections[-1]["last"] == len(paragraphs) - 1
    for before, after in zip(sections, sections[1:]):
        assert after["first"] == before["last"] + 1
    for s in sections:
        assert s["first"] <= s["last"]
        assert s["label"] in LABELS
        assert s["heading"] == paragraphs[s["first"]]["heading"]
        assert all(p["heading"] == s["heading"] for p in paragraphs[s["first"]: s["last"] + 1])
        assert all(p["section_label"] == s["label"] for p in paragraphs[s["first"]: s["last"] + 1])
        assert all(p["source"] == s["source"] for p in paragraphs[s["first"]: s["last"] + 1])
    headings = [s["heading"] for s in sections]
    assert "一、坚持党的领导，把牢人大工作正确政治方向" in headings and "2024年主要任务" in headings


def test_report_counts(report):
    counts, paragraphs = report["counts"], report["paragraphs"]
    assert set(counts) == set(LABELS)
    assert sum(counts.values()) == len(paragraphs)
    for label in LABELS:
        assert counts[label] == sum(p["label"] == label for p in paragraphs)


def test_report_labels_match_classify(client, report):
    """A paragraph's own label in a report is what /v1/classify gives it with the same heading path."""
    paragraphs = report["paragraphs"][:MAX_PARAGRAPHS]  # the preamble (no path) and the review part
    assert any(p["heading_path"] for p in paragraphs) and not all(p["heading_path"] for p in paragraphs)
    sent = [{"text": p["text"], "heading_path": p["heading_path"]} for p in paragraphs]
    for p, result in zip(paragraphs, classify(client, sent)["results"]):
        assert_same(p, result)
        assert result["context"] == p["context"]


# --- bad input: always 4xx, naming the field (and the limit) ----------------------------------


def test_report_uses_the_models_own_combiner(sample_report):
    """Whole-report mode through the service weighs rules and model as the model's metadata says."""
    from model.reports import Combiner, label_report

    model = Recording()
    model.info = {"combiner": {"part": 0.0, "preamble": 0.0, "heading": 0.0, "keywords": 0.0, "fitted_on": "test"}}
    with recording_client(model) as (c, _):
        response = c.post("/v1/reports", json={"text": sample_report})
    assert response.status_code == 200, response.text
    assert model.contexts[-1] == [p["heading_path"] for p in response.json()["paragraphs"]]  # read with their paths
    got = [(p["section_label"], p["source"], p["context"]) for p in response.json()["paragraphs"]]
    assert got == [(r["section_label"], r["source"], r["context"]) for r in label_report(model, sample_report).rows()]
    default = [(r["section_label"], r["source"], r["context"]) for r in label_report(model, sample_report, Combiner()).rows()]
    assert got != default  # so the test can tell the two apart


def assert_problem(response, status: int, field: str, *fragments: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["detail"], body
    fields = [e["field"] for e in body["errors"]]
    assert field in fields, (field, body)
    assert field in body["detail"]
    for fragment in fragments:
        assert fragment in body["detail"], (fragment, body)
    return body


def raw(client: TestClient, path: str, content: bytes | str, headers: dict | None = None):
    return client.post(path, content=content.encode() if isinstance(content, str) else content, headers=headers or JSON)


OK = PARAGRAPHS[0]


@pytest.mark.parametrize(
    "payload, status, field, fragments",
    [
        ({"paragraphs": []}, 422, "paragraphs", ["at least 1"]),
        ({"paragraphs": [OK, ""]}, 422, "paragraphs[1]", ["empty"]),
        ({"paragraphs": [OK, " \u3000\n\t "]}, 422, "paragraphs[1]", ["whitespace"]),
        ({"paragraphs": [OK, 3]}, 422, "paragraphs[1]", ["string"]),
        ({"paragraphs": [OK, None]}, 422, "paragraphs[1]", ["string"]),
        ({"paragraphs": OK}, 422, "paragraphs", ["list"]),
        ({}, 422, "paragraphs", ["required"]),
        ({"paragraphs": [OK] * (MAX_PARAGRAPHS + 1)}, 413, "paragraphs", [f"has {MAX_PARAGRAPHS + 1} items", f"the limit is {MAX_PARAGRAPHS}"]),
        ({"paragraphs": [OK, "审" * (MAX_PARAGRAPH_CHARS + 1)]}, 413, "paragraphs[1]", [f"the limit is {MAX_PARAGRAPH_CHARS}"]),
        ({"paragraphs": [OK], "colour": "red"}, 422, "colour", ["not permitted"]),
        ({"paragraphs": [OK], "top_k": 0}, 422, "top_k", ["greater than or equal to 1"]),
        ({"paragraphs": [OK], "top_k": 99}, 422, "top_k", ["less than or equal to 7"]),
        ({"paragraphs": [OK], "top_k": "three"}, 422, "top_k", ["integer"]),
        ({"paragraphs": [OK], "top_k": "3"}, 422, "top_k", ["integer"]),  # strict, as min_score is
        ({"paragraphs": [OK], "top_k": True}, 422, "top_k", ["integer"]),
        ({"paragraphs": ["hello world"]}, 422, "paragraphs[0]", ["no Chinese"]),
        ({"paragraphs": ["人大\u0000工作"]}, 422, "paragraphs[0]", ["control character", "U+0000"]),
        ({"paragraphs": [OK, "人大\u0007工作"]}, 422, "paragraphs[1]", ["control character", "U+0007"]),
        ({"paragraphs": ["人大\ue000工作"]}, 422, "paragraphs[0]", ["private-use", "U+E000"]),
        ({"paragraphs": ["人大\U000f0001工作"]}, 422, "paragraphs[0]", ["private-use", "U+F0001"]),
        ({"paragraphs": [OK, []]}, 422, "paragraphs[1]", ["string", "object"]),
        # paragraphs as objects: the text checked as ever, the context named to the field
        ({"paragraphs": [OK, {"text": OK, "heading": 3}]}, 422, "paragraphs[1].heading", ["string"]),
        ({"paragraphs": [{"text": OK, "heading": ["一、立法"]}]}, 422, "paragraphs[0].heading", ["string"]),
        ({"paragraphs": [{"text": OK, "heading_path": ["一、立法"] * (MAX_PATH_ITEMS + 1)}]}, 422, "paragraphs[0].heading_path",
         [f"at most {MAX_PATH_ITEMS} items"]),
        ({"paragraphs": [OK, OK, {"text": OK, "heading": "审" * (MAX_HEADING_CHARS + 1)}]}, 422, "paragraphs[2].heading",
         [f"at most {MAX_HEADING_CHARS} characters"]),
        ({"paragraphs": [{"text": OK, "heading_path": ["一、立法", "审" * (MAX_HEADING_CHARS + 1)]}]}, 422,
         "paragraphs[0].heading_path[1]", [f"at most {MAX_HEADING_CHARS} characters"]),
        ({"paragraphs": [{"text": OK, "heading_path": ["一、立法", 2]}]}, 422, "paragraphs[0].heading_path[1]", ["string"]),
        ({"paragraphs": [{"text": OK, "heading_path": "一、立法"}]}, 422, "paragraphs[0].heading_path", ["list"]),
        ({"paragraphs": [{"text": OK, "foo": "一、立法"}]}, 422, "paragraphs[0].foo", ["not permitted"]),
        ({"paragraphs": [OK, {"heading": "一、立法"}]}, 422, "paragraphs[1].text", ["required"]),
        ({"paragraphs": [{"text": None, "heading": "一、立法"}]}, 422, "paragraphs[0].text", ["string"]),
        ({"paragraphs": [{"text": " ", "heading": "一、立法"}]}, 422, "paragraphs[0].text", ["whitespace"]),
        ({"paragraphs": [OK, {"text": "hello", "heading": "一、立法"}]}, 422, "paragraphs[1].text", ["no Chinese"]),
        ({"paragraphs": [{"text": "审" * (MAX_PARAGRAPH_CHARS + 1)}]}, 413, "paragraphs[0].text", [f"the limit is {MAX_PARAGRAPH_CHARS}"]),
        ({"paragraphs": [{"text": OK, "heading": "一、\u0007立法"}]}, 422, "paragraphs[0].heading", ["control character", "U+0007"]),
        ({"paragraphs": [{"text": OK, "heading_path": ["一、立法", "（一）\ue000"]}]}, 422, "paragraphs[0].heading_path[1]",
         ["private-use", "U+E000"]),
    ],
)
def test_classify_rejects(client, payload, status, field, fragments):
    assert_problem(client.post("/v1/classify", json=payload), status, field, *fragments)


@pytest.mark.parametrize(
    "payload, status, field, fragments",
    [
        ({"text": ""}, 422, "text", ["at least 1"]),
        ({"text": "\n \u3000 \n"}, 422, "text", ["whitespace"]),
        ({"text": None}, 422, "text", ["string"]),
        ({"text": ["一、坚持党的领导"]}, 422, "text", ["string"]),
        ({}, 422, "text", ["required"]),
        ({"text": "审" * (MAX_REPORT_CHARS + 1)}, 413, "text", [f"the limit is {MAX_REPORT_CHARS:,}"]),
        # within the report's limit, but one paragraph over a paragraph's: a report that lost its line breaks
        ({"text": "一、坚持党的领导\n" + "审议报告。" * (MAX_PARAGRAPH_CHARS // 5 + 1)}, 413, "text",
         [f"paragraph 2 has {MAX_PARAGRAPH_CHARS + 5:,} characters", f"{MAX_PARAGRAPH_CHARS:,} at most", "line breaks"]),
        ({"text": "一、坚持党的领导", "paragraphs": ["人大"]}, 422, "paragraphs", ["not permitted"]),
        ({"text": "hello world\n\nthis is not a report"}, 422, "text", ["no Chinese"]),
        ({"text": "一、坚持党的领导\n人大\u0007工作"}, 422, "text", ["control character", "U+0007"]),
        ({"text": "一、坚持党的领导\ue000"}, 422, "text", ["private-use"]),
    ],
)
def test_report_rejects(client, payload, status, field, fragments):
    assert_problem(client.post("/v1/reports", json=payload), status, field, *fragments)


@pytest.mark.parametrize("path, body, field", [
    ("/v1/classify", '{"paragraphs": ["人大\\ud800工作"]}', "paragraphs[0]"),
    ("/v1/classify", '{"paragraphs": [{"text": "人大工作", "heading": "一、\\udc00"}]}', "paragraphs[0].heading"),
    ("/v1/classify", '{"paragraphs": [{"text": "人大工作", "heading_path": ["\\ud800"]}]}', "paragraphs[0].heading_path[0]"),
    ("/v1/classify", '{"paragraphs": ["人大工作\\udfff"]}', "paragraphs[0]"),
    ("/v1/reports", '{"text": "一、坚持党的领导\\ud83d"}', "text"),
])
def test_lone_surrogate_is_rejected(client, path, body, field):
    # Either our own check (which names the code point) or pydantic's str check catches it first.
    detail = assert_problem(raw(client, path, body), 422, field)["detail"]
    assert "surrogate" in detail or "unicode string" in detail, detail


def test_a_character_of_a_newer_cjk_extension_is_accepted(client):
    # U+31350 (Extension H, Unicode 15.0): unassigned to Python 3.11's tables, a Chinese character all the same
    response = classify(client, ["人大工作" + chr(0x31350) + "。"])
    assert len(response["results"]) == 1


def test_surrogate_pair_escape_is_fine(client):
    # A proper pair (here a CJK Extension B character) is one code point, not a lone surrogate.
    response = raw(client, "/v1/classify", '{"paragraphs": ["人大工作\\ud840\\udc00。"]}')
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
@pytest.mark.parametrize("body", ['{"paragraphs": [', "{'paragraphs': []}", "not json", '{"paragraphs": ["人大"]}}'])
def test_malformed_json(client, path, body):
    body_json = assert_problem(raw(client, path, body), 400, "body", "malformed JSON")
    assert "[" not in body_json["errors"][0]["field"]


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
@pytest.mark.parametrize("body, fragments", [
    ('{"paragraphs": ["人大工作"]}'.encode("gbk"), ["not UTF-8", "byte 0xc8 at position 17"]),  # GBK sent as JSON
    (b'{"text": "\xff\xfe"}', ["not UTF-8", "byte 0xff"]),
    (b'{"paragraphs": ' + b"[" * 3000, ["nested too deeply"]),
])
def test_an_unreadable_body_says_why(client, path, body, fragments):
    """Bodies FastAPI cannot read past JSON's syntax (its own answer: "There was an error parsing the body")."""
    assert_problem(raw(client, path, body), 400, "body", *fragments)


def test_min_score_not_a_number_is_refused_as_such(client):
    """Python's JSON reader takes the NaN literal; it is no score to compare with."""
    body = '{"paragraphs": ["人大工作"], "min_score": NaN}'
    assert_problem(raw(client, "/v1/classify", body), 422, "min_score", "finite")


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
def test_missing_body(client, path):
    assert_problem(client.post(path, headers=JSON), 422, "body", "required")


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
def test_json_that_is_not_an_object(client, path):
    assert_problem(raw(client, path, '["人大工作"]'), 422, "body")


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
@pytest.mark.parametrize("kind", ["text", "form", "none", "multipart"])
def test_wrong_content_type(client, path, kind):
    if kind == "text":
        response = client.post(path, content='{"paragraphs": ["人大工作"]}'.encode(), headers={"content-type": "text/plain"})
    elif kind == "form":
        response = client.post(path, data={"paragraphs": "人大工作"})
    elif kind == "multipart":
        response = client.post(path, files={"text": ("a.txt", "人大工作".encode())})
    else:
        response = client.post(path, content=b'{"paragraphs": ["x"]}')
    if path == "/v1/reports" and kind == "multipart":  # a file upload, but without its `file` field
        assert_problem(response, 422, "file")
        return
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["errors"][0]["field"] == "body"
    assert body["detail"].startswith("Content-Type must be application/json")
    assert ("multipart/form-data with a `file`" in body["detail"]) == (path == "/v1/reports")


def test_json_with_charset_is_accepted(client):
    response = client.post("/v1/classify", content=json.dumps({"paragraphs": [OK]}).encode(),
                           headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text


def test_body_over_the_limit_with_content_length(client):
    body = json.dumps({"paragraphs": ["审" * (MAX_BODY_BYTES // 2)]}).encode()  # \u escapes: 6 bytes a character
    assert len(body) > MAX_BODY_BYTES
    response = client.post("/v1/classify", content=body, headers=JSON)
    assert response.request.headers["content-length"] == str(len(body))
    assert_problem(response, 413, "body", f"{len(body):,} bytes", f"the limit is {MAX_BODY_BYTES:,}")


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports"])
def test_body_over_the_limit_streamed(client, path):
    chunk = b" " * 4096

    def stream():
        yield b'{"text": "'
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk
        yield b'"}'

    response = client.post(path, content=stream(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "body", f"limit of {MAX_BODY_BYTES:,} bytes")


def test_streamed_body_under_the_limit_is_fine(client):
    def stream():
        yield b'{"paragraphs": '
        yield json.dumps([OK]).encode()
        yield b"}"

    response = client.post("/v1/classify", content=stream(), headers=JSON)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 1


def test_a_false_small_content_length_does_not_get_past(client):
    body = json.dumps({"paragraphs": ["审" * (MAX_BODY_BYTES // 2)]}).encode()
    response = client.post("/v1/classify", content=body, headers={**JSON, "content-length": "100"})
    assert_problem(response, 413, "body", f"limit of {MAX_BODY_BYTES:,} bytes")


def test_bad_input_never_reaches_a_500(client):
    # A grab bag sent raw; the point is only that none of them is a server error.
    for body in ['{"paragraphs": [{"text": 1}]}', '{"paragraphs": [{"text": "人大", "heading": {}}]}',
                 '{"paragraphs": [{"text": "人大", "heading_path": [[]]}]}', '{"paragraphs": [{}]}',
                 '{"paragraphs": [[]]}', '{"paragraphs": [true]}',
                 '{"paragraphs": ["人大"], "top_k": 1e400}', '{"paragraphs": ["人大"], "top_k": NaN}',
                 '{"paragraphs": ["人大"], "top_k": 2.5}', '{"paragraphs": null}', '{"\\ud800": 1}',
                 '[' * 5000 + ']' * 5000, '"\\ud800"', "null", "1", "\ufeff{}", ""]:
        for path in ("/v1/classify", "/v1/reports"):
            response = raw(client, path, body)
            assert 400 <= response.status_code < 500, (path, body[:40], response.status_code, response.text)
            assert response.json()["detail"]
    bad_utf8 = client.post("/v1/classify", content=b'{"paragraphs": ["\xff\xfe"]}', headers=JSON)
    assert 400 <= bad_utf8.status_code < 500, bad_utf8.text


def test_unknown_path_and_method(client):
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/classify").status_code == 405


# --- start-up: loading, and a load that fails --------------------------------------------------


def test_not_ready_while_loading_then_ready(tiny_model):
    release = threading.Event()

    def load():
        assert release.wait(60), "the test never released the load"
        return load_predictor(tiny_model, threads=1)

    with TestClient(create_app(settings(), load=load), raise_server_exceptions=False) as c:
        try:
            assert c.get("/healthz").status_code == 200
            ready = c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["ready"] is False and "loading" in ready.json()["detail"]
            for path, payload in (("/v1/classify", {"paragraphs": [OK]}), ("/v1/reports", {"text": OK})):
                busy = c.post(path, json=payload)
                assert busy.status_code == 503, busy.text
                assert "not ready" in busy.json()["detail"] and busy.headers["retry-after"]
            assert c.get("/v1/model").status_code == 503
            assert c.get("/v1/labels").status_code == 200  # the label set does not need the model
            # Bad input is still a 4xx while loading.
            assert c.post("/v1/classify", json={"paragraphs": []}).status_code == 422
        finally:
            release.set()
        wait_ready(c)
        assert len(classify(c, PARAGRAPHS[:2])["results"]) == 2


def test_a_load_that_fails(tmp_path):
    def load():
        raise FileNotFoundError(f"{tmp_path}: no trained model here")

    with TestClient(create_app(settings(), load=load), raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 10
        while "no trained model" not in (c.get("/readyz").json().get("detail") or "") and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "FileNotFoundError" in ready.json()["detail"] and "no trained model here" in ready.json()["detail"]
        assert c.get("/healthz").status_code == 200
        failed = c.post("/v1/classify", json={"paragraphs": [OK]})
        assert failed.status_code == 503 and "no trained model here" in failed.json()["detail"]
        assert c.post("/v1/reports", json={"text": OK}).status_code == 503
        assert c.get("/v1/model").status_code == 503


def test_a_model_folder_that_is_not_a_model(tmp_path):
    with TestClient(create_app(settings(), model_dir=tmp_path), raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 10
        while not (c.get("/readyz").json().get("detail") or "").startswith("FileNotFoundError") and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "renda_model.json" in ready.json()["detail"]
        assert c.get("/healthz").status_code == 200


# --- POST /v1/reports with a file (renda/readers.py) -------------------------------------------------

def upload(client: TestClient, name: str, data: bytes, **form) -> "Response":  # noqa: F821
    return client.post("/v1/reports", files={"file": (name, data)}, data={k: str(v) for k, v in form.items()})


@pytest.mark.parametrize("kind, fmt, encoding", [("gb18030", "text", "gb18030"), ("html", "html", "utf-8"),
                                                 ("pdf", "pdf", None), ("docx", "docx", None)])
def test_a_report_file_is_labelled_as_its_text(client, report, sample_report, kind, fmt, encoding):
    from renda.parsing import is_furniture
    from training.formats import SUFFIX, render

    data = render(kind, sample_report, sample_report.split("\n")[0].strip())
    response = upload(client, f"白沙-2024{SUFFIX[kind]}", data, min_score=0.5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["read"] == {"name": f"白沙-2024{SUFFIX[kind]}", "format": fmt, **({"encoding": encoding} if encoding else {})}
    assert all("uncertain" in p for p in body["paragraphs"])

    def kept(rows):
        return [(p["text"], p["section_label"], p["label"]) for p in rows if not is_furniture(p["text"])]
    assert kept(body["paragraphs"]) == kept(report["paragraphs"])


@pytest.mark.parametrize("name, data, status, fragment", [
    ("report.doc", b"\xd0\xcf\x11\xe0" + bytes(50), 415, ".doc file is not read (save it as .docx)"),
    ("photo.png", b"\x89PNG\r\n\x1a\n", 415, "an image is not read"),
    ("cut.pdf", b"%PDF-1.4\n1 0 obj <<", 422, "not a readable pdf file"),
    ("fake.docx", "人大工作".encode(), 422, "not a .docx file"),
    ("english.txt", b"no Chinese here", 422, "no Chinese text"),
    ("empty.txt", b"  \n", 422, "empty"),
])
def test_a_bad_file_gets_its_reason(client, name, data, status, fragment):
    assert_problem(upload(client, name, data), status, "file", fragment)


def test_an_upload_with_page_breaks_is_read_and_one_with_a_nul_is_refused_naming_the_file(client):
    text = "一、坚持立法为民\n制定地方性法规三件。\x0c二、依法开展监督\n听取审议专项工作报告八个。\n"
    response = upload(client, "pages.txt", text.encode("utf-8"))
    assert response.status_code == 200, response.text
    assert [p["text"] for p in response.json()["paragraphs"]][1:3] == ["制定地方性法规三件。", "二、依法开展监督"]
    response = upload(client, "nul.txt", text.replace("\x0c", "\x00").encode("utf-8"))
    assert_problem(response, 422, "file", "control character (U+0000)", "(line 2)")


def test_a_web_page_source_sent_as_json_text_is_read_as_a_web_page(client):
    page = ("<html><head><title>工作报告</title></head><body><nav>首页 | 返回顶部</nav><article>"
            "<h2>一、坚持立法为民</h2><p>常委会全年制定地方性法规三件，修改两件，审查规范性文件四十件。</p>"
            "<h2>二、依法开展监督</h2><p>听取审议市政府专项工作报告八个，开展执法检查三次，专题询问一次。</p>"
            "</article></body></html>")
    response = client.post("/v1/reports", json={"text": page})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["read"] == {"name": "text", "format": "html", "encoding": "utf-8"}
    texts = [p["text"] for p in body["paragraphs"]]
    assert "一、坚持立法为民" in texts and not any("<" in t for t in texts)  # headings and paragraphs, no tags
    plain = client.post("/v1/reports", json={"text": "一、坚持立法为民\n制定条例<三件>。\n"}).json()
    assert "read" not in plain  # report text is read as it is


def test_an_upload_with_a_part_of_another_name_is_refused(client):
    report = "一、坚持立法为民\n制定地方性法规三件。\n".encode("utf-8")
    response = client.post("/v1/reports", files={"file": ("r.txt", report)}, data={"text": "审议", "min_score": "0.5"})
    assert_problem(response, 422, "text", "not a part of an upload", "`file`")


def test_upload_form_fields_are_checked(client):
    assert_problem(upload(client, "r.txt", "人大工作报告".encode(), min_score=2), 422, "min_score")
    assert_problem(upload(client, "r.txt", "人大工作报告".encode(), min_score="nan"), 422, "min_score", "finite")
    # a form field named `file` that is no file part (no file name): said so, not as a type error
    assert_problem(upload(client, "", "人大工作报告".encode()), 422, "file", "a file part with a file name")
    assert_problem(client.post("/v1/reports", files={"other": ("r.txt", b"x")}), 422, "file")
    # two reports in one request: refused with a reason, not one of them labelled in silence
    two = [("file", ("a.txt", "人大工作报告".encode())), ("file", ("b.txt", "人大工作报告".encode()))]
    assert_problem(client.post("/v1/reports", files=two), 422, "file", "one report file per request")


def test_a_file_over_the_limit_is_refused_before_it_is_read(tiny_model, sample_report):
    with TestClient(create_app(settings(max_file_bytes=2048), model_dir=tiny_model), raise_server_exceptions=False) as small:
        wait_ready(small)
        response = upload(small, "big.txt", sample_report.encode("gb18030") * 2)
        assert response.status_code == 413, response.text
        assert_problem(upload(small, "big.txt", "人大".encode() * 1500), 413, "file", "the limit is 2,048")


def test_the_upload_is_documented_on_v1_reports(client):
    body = client.get("/openapi.json").json()["paths"]["/v1/reports"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]
