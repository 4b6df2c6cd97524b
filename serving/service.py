"""The model behind the API: loaded once, off the event loop; concurrent requests batched.

Requests are blocking calls made from FastAPI's thread pool. Each one hands its paragraphs to a
single worker thread, which waits a few milliseconds for others to arrive and runs them through
the model together (one padded batch instead of many small ones), then hands each request its
own results. `make bench-serve` (serving/bench.py) measures what that buys.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from model.predictor import Prediction, Predictor

log = logging.getLogger("renda.service")


class ModelNotReady(RuntimeError):
    pass


Contexts = list[list[str]] | None  # each paragraph's heading path ([] = unknown); None = none for any


class Batcher:
    """One worker thread runs queued jobs through the model together. A job is one request's texts
    and their contexts; the batch's contexts are concatenated in the same order as its texts, so
    each stays with its paragraph."""

    def __init__(self, predict: Callable[..., list[Prediction]], wait_ms: float, max_paragraphs: int):
        self.predict, self.wait, self.max_paragraphs = predict, wait_ms / 1000, max_paragraphs
        self.jobs: queue.Queue[tuple[list[str], Contexts, Future] | None] = queue.Queue()
        self.closed, self.lock = False, threading.Lock()
        self.thread = threading.Thread(target=self._run, name="renda-batcher", daemon=True)
        self.thread.start()

    def submit(self, texts: list[str], contexts: Contexts = None) -> list[Prediction]:
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts")
        future: Future = Future()
        with self.lock:  # nothing may queue behind the closing None: no worker would ever answer it
            if self.closed:
                raise ModelNotReady("the model service has stopped")
            self.jobs.put((texts, contexts, future))
        return future.result()

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.jobs.put(None)

    def _gather(self, first: tuple[list[str], Contexts, Future]) -> tuple[list[tuple[list[str], Contexts, Future]], bool]:
        batch, size, deadline = [first], len(first[0]), time.monotonic() + self.wait
        while size < self.max_paragraphs:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
            size += len(job[0])
        return batch, False

    def _predict(self, batch: list[tuple[list[str], Contexts, Future]]) -> list[Prediction]:
        texts = [t for job_texts, _, _ in batch for t in job_texts]
        if all(contexts is None for _, contexts, _ in batch):
            return self.predict(texts)  # no request sent context: the plain call
        contexts = [list(c) for job_texts, job_contexts, _ in batch for c in (job_contexts or [[]] * len(job_texts))]
        return self.predict(texts, contexts)

    def _run(self) -> None:
        while (first := self.jobs.get()) is not None:
            batch, closing = self._gather(first)
            try:
                predictions = self._predict(batch)
            except Exception as error:  # every waiting request learns of it; the worker lives on
                log.exception("prediction failed")
                for _, _, future in batch:
                    future.set_exception(error)
            else:
                at = 0
                for job_texts, _, future in batch:
                    future.set_result(predictions[at: at + len(job_texts)])
                    at += len(job_texts)
            if closing:
                return


class ModelService:
    """Holds the predictor; `ready` once it has loaded and answered a probe."""

    def __init__(self, load: Callable[[], Predictor], batch_wait_ms: float = 0.0, max_batch_paragraphs: int = 64):
        self._load, self.batch_wait_ms, self.max_batch = load, batch_wait_ms, max_batch_paragraphs
        self.predictor: Predictor | None = None
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.ready = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._start, name="renda-model-loader", daemon=True)
        thread.start()
        return thread

    def _start(self) -> None:
        try:
            started = time.monotonic()
            predictor = self._load()
            predictor.predict(["坚持党的领导。"])  # a probe: loaded *and* answering
            self.predictor = predictor
            self.batcher = Batcher(predictor.predict, self.batch_wait_ms, self.max_batch)
            self.ready.set()
            log.info("model %s ready in %.1f s", predictor.model_id, time.monotonic() - started)
        except Exception as error:
            self.error = " ".join(f"{type(error).__name__}: {error}".split())  # one line: /readyz shows it
            # The reason, not a traceback (an expected state: a missing or broken folder); LOG_LEVEL=DEBUG adds it.
            log.error("model failed to load: %s", self.error, exc_info=log.isEnabledFor(logging.DEBUG))

    def stop(self) -> None:
        self.ready.clear()  # not ready once stopped (until a new start() has loaded again)
        batcher, self.batcher = self.batcher, None
        if batcher:
            batcher.close()

    def require(self) -> Predictor:
        if not self.ready.is_set() or self.predictor is None:
            raise ModelNotReady(self.error or "the model is still loading")
        return self.predictor

    def classify(self, texts: list[str], contexts: Contexts = None) -> list[Prediction]:
        """Predictor.predict through the batcher: `contexts[i]` is text i's heading path."""
        self.require()
        batcher = self.batcher
        if batcher is None:
            raise ModelNotReady("the model service has stopped")
        return batcher.submit(texts, contexts)
