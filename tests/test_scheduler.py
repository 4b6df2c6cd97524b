"""Fair scheduling in the service (serving/service.py `Batcher`): requests cut into chunks, a small
request served before a large one queued earlier, a large one never starved, a bounded queue that
refuses at once with Retry-After and loses nothing it accepted."""

import math
import threading
import time

import pytest

from serving.service import Batcher, ClientGone, QueueFull
from tests.test_service import Recording, recorded_label, recording_client


class Gated(Recording):
    """Records batches; each batch waits for the gate (set: runs freely) and takes `pause` seconds."""

    def __init__(self, pause: float = 0.0):
        super().__init__()
        self.gate, self.pause, self.started = threading.Event(), pause, threading.Event()

    def predict(self, texts, contexts=None):
        self.started.set()
        assert self.gate.wait(30)
        time.sleep(self.pause)
        return super().predict(texts, contexts)


def in_thread(batcher: Batcher, texts: list[str], answers: dict, finished: list) -> threading.Thread:
    def run():
        answers[texts[0]] = batcher.submit(texts)
        finished.append(texts[0])
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_small_request_after_a_large_one_finishes_first():
    model = Gated(pause=0.02)
    batcher = Batcher(model.predict, wait_ms=0, max_paragraphs=8)
    large = [f"报告第{i}段人大工作" for i in range(40)]
    answers, finished = {}, []
    threads = [in_thread(batcher, large, answers, finished)]
    assert model.started.wait(5)  # the large request's first chunk is in the model
    threads.append(in_thread(batcher, ["单独一段"], answers, finished))
    wait_until(lambda: batcher.waiting() == 2)
    model.gate.set()
    for thread in threads:
        thread.join(10)
    assert finished == ["单独一段", large[0]]
    assert "单独一段" in model.calls[1]  # served in the very next batch, beside a chunk of the large one
    assert all(len(batch) <= 8 for batch in model.calls)
    assert [p.label for p in answers[large[0]]] == [recorded_label(t) for t in large]  # its chunks put back in order
    batcher.close()


def test_a_large_request_is_never_starved_by_a_stream_of_small_ones():
    model = Gated()
    model.gate.set()
    batcher = Batcher(model.predict, wait_ms=0, max_paragraphs=8)
    large = [f"长报告第{i}段" for i in range(30)]
    answers, finished = {}, []
    stop = threading.Event()

    def stream(n):
        i = 0
        while not stop.is_set():
            batcher.submit([f"客户{n}短请求{i}"] * 6)  # enough to fill every batch on their own
            i += 1
    streams = [threading.Thread(target=stream, args=(n,), daemon=True) for n in range(6)]
    for thread in streams:
        thread.start()
    wait_until(lambda: len(model.calls) > 5)
    in_thread(batcher, large, answers, finished).join(20)
    stop.set()
    assert large[0] in answers and [p.label for p in answers[large[0]]] == [recorded_label(t) for t in large]
    with_large = [batch for batch in model.calls if any(t.startswith("长报告") for t in batch)]
    assert len(with_large) <= 30 // 2  # at least a quarter of each batch (2 of 8) while it was the oldest
    for thread in streams:
        thread.join(10)
    batcher.close()


def test_a_full_queue_refuses_at_once_and_loses_nothing_accepted():
    model = Gated()
    batcher = Batcher(model.predict, wait_ms=0, max_paragraphs=4, max_queued=10)
    answers, finished = {}, []
    first = [f"甲{i}" for i in range(4)]
    threads = [in_thread(batcher, first, answers, finished)]
    assert model.started.wait(5)  # taken into the model: no longer waiting in the queue
    second = [f"乙{i}" for i in range(8)]
    threads.append(in_thread(batcher, second, answers, finished))
    wait_until(lambda: batcher.waiting() == 2)
    started = time.monotonic()
    with pytest.raises(QueueFull) as refused:
        batcher.submit([f"丙{i}" for i in range(6)])  # 6 of the 8 waiting go before or beside it: 6 + 6 > 10
    assert time.monotonic() - started < 1 and refused.value.retry_after >= 1 and "8 paragraphs are waiting" in str(refused.value)
    # the wait is for the room it needs (6 + 6 - 10 = 2 paragraphs to go), not for the whole queue ahead
    assert batcher.retry_after(2) == max(1, math.ceil(2 * batcher.seconds_per_paragraph))
    batcher.seconds_per_paragraph = 0.5
    with pytest.raises(QueueFull) as again:
        batcher.submit([f"丙{i}" for i in range(6)])
    assert again.value.retry_after == 1  # 2 × 0.5 s; the whole queue ahead (6) would have said 3
    model.gate.set()
    for thread in threads:
        thread.join(10)
    assert set(finished) == {"甲0", "乙0"}
    assert [p.label for p in answers["乙0"]] == [recorded_label(t) for t in second]
    assert [p.label for p in batcher.submit(["丁"])] == [recorded_label("丁")]  # room again
    batcher.close()


def test_a_single_paragraph_is_taken_while_a_report_larger_than_the_queue_waits():
    """A whole report over the queue's limit is taken into an empty queue; a paragraph sent meanwhile
    would wait for one batch, not for the report, so it is taken (not refused) and answered first.
    A second large request is refused."""
    model = Gated()
    batcher = Batcher(model.predict, wait_ms=0, max_paragraphs=4, max_queued=10)
    answers, finished = {}, []
    report = [f"甲{i}" for i in range(30)]
    threads = [in_thread(batcher, report, answers, finished)]
    assert model.started.wait(5)  # its first batch is in the model; 26 paragraphs wait
    threads.append(in_thread(batcher, ["乙"], answers, finished))
    wait_until(lambda: batcher.waiting() == 2)
    with pytest.raises(QueueFull, match="27 paragraphs are waiting"):
        batcher.submit([f"丙{i}" for i in range(6)])
    model.gate.set()
    for thread in threads:
        thread.join(10)
    assert finished == ["乙", "甲0"]
    assert [p.label for p in answers["甲0"]] == [recorded_label(t) for t in report]
    batcher.close()


def test_a_failing_model_fails_the_batch_and_the_worker_lives_on():
    calls = []

    def predict(texts, contexts=None):
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return Recording().predict(texts, contexts)
    batcher = Batcher(predict, wait_ms=0, max_paragraphs=4)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(["一", "二", "三", "四", "五"])  # its later chunk is dropped with it
    assert [p.label for p in batcher.submit(["六"])] == [recorded_label("六")]
    assert batcher.queued == 0 and batcher.waiting() == 0
    batcher.close()


def test_the_service_answers_503_with_retry_after_when_its_queue_is_full():
    model = Gated()
    model.gate.set()  # the start-up probe passes
    with recording_client(model, max_batch_paragraphs=2, max_queue_paragraphs=3) as (client, _):
        assert client.get("/v1/model").json()["limits"]["max_queue_paragraphs"] == 3
        model.gate.clear()
        model.started.clear()
        answers = []
        held = threading.Thread(target=lambda: answers.append(client.post("/v1/classify", json={"paragraphs": ["甲", "乙"]})), daemon=True)
        held.start()
        assert model.started.wait(5)
        waiting = threading.Thread(target=lambda: answers.append(client.post("/v1/classify", json={"paragraphs": ["丙", "丁", "戊"]})), daemon=True)
        waiting.start()
        wait_until(lambda: client.app.state.service.batcher.waiting() == 2)
        refused = client.post("/v1/classify", json={"paragraphs": ["己", "庚"]})  # 2 of the 3 waiting, and its 2: over 3
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "busy" in refused.json()["detail"]
        model.gate.set()
        held.join(10)
        waiting.join(10)
        assert [a.status_code for a in answers] == [200, 200]


def test_a_request_whose_client_hung_up_is_dropped_and_the_others_go_on():
    """`gone` is asked while a request waits: once true, what it has left never reaches the model,
    it gets ClientGone, and the request beside it is answered in full."""
    model = Gated()
    batcher = Batcher(model.predict, wait_ms=0, max_paragraphs=4, poll=0.01)
    large = [f"报告第{i}段人大工作" for i in range(40)]
    hung_up, outcome = threading.Event(), {}

    def abandoned():
        try:
            batcher.submit(large, gone=hung_up.is_set)
        except ClientGone as error:
            outcome["large"] = error
    thread = threading.Thread(target=abandoned, daemon=True)
    thread.start()
    assert model.started.wait(5)  # its first chunk is in the model
    hung_up.set()
    wait_until(lambda: "large" in outcome)
    answers, finished = {}, []
    small = in_thread(batcher, ["单独一段人大工作"], answers, finished)
    model.gate.set()
    small.join(10)
    thread.join(10)
    assert [p.label for p in answers["单独一段人大工作"]] == [recorded_label("单独一段人大工作")]
    computed = [t for batch in model.calls for t in batch if t in large]
    assert len(computed) <= 4  # the batch it was in, nothing after
    assert batcher.waiting() == 0 and batcher.queued == 0
    batcher.close()


def test_the_service_drops_a_whole_report_whose_client_disconnects(sample_report, caplog):
    """Through the real app, as uvicorn calls it: the body, then the client's disconnect. The report's
    paragraphs stop going to the model, the answer (which nobody reads) is 499, and the log says so."""
    import json
    import logging

    import anyio

    from tests.test_service import recording_client

    caplog.set_level(logging.INFO, logger="renda.service")
    model = Gated(pause=0.1)
    model.gate.set()
    report = "\n".join([sample_report] * 3)  # some 60 paragraphs: 16 batches of 4, 0.1 s each
    with recording_client(model, max_batch_paragraphs=4, batch_wait_ms=0) as (client, _):
        body = json.dumps({"text": report}, ensure_ascii=False).encode()
        sent_body, messages = False, []

        async def receive():
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}  # the client is gone as soon as it has sent

        async def send(message):
            messages.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/reports", "raw_path": b"/v1/reports", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
        before = sum(map(len, model.calls))
        anyio.run(client.app, scope, receive, send)
        computed = sum(map(len, model.calls)) - before
        answered = client.post("/v1/reports", json={"text": report})  # the same report, the client waiting
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 499
    assert answered.status_code == 200
    assert computed < len(answered.json()["paragraphs"]) / 2
    assert "client gone" in caplog.text and "paragraphs not computed" in caplog.text
