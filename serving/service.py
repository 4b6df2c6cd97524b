"""The model behind the API: loaded once, off the event loop; concurrent requests batched.

Requests are blocking calls made from FastAPI's thread pool. Each one hands its paragraphs to a
single worker thread, which waits a few milliseconds for others to arrive and runs them through
the model together (one padded batch instead of many small ones), then hands each request its
own results. `make bench-serve` (bench/serve.py) measures what that buys.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from model.predictor import Prediction, Predictor

log = logging.getLogger("renda.service")


class ModelNotReady(RuntimeError):
    pass


Contexts = list[list[str]] | None  # each paragraph's heading path ([] = unknown); None = none for any


class BatcherClosed(ModelNotReady):
    """This batcher takes nothing more (the service stopped, or another model took its place)."""


class ClientGone(RuntimeError):
    """The client hung up while its request waited: its paragraphs left were dropped from the queue."""


class QueueFull(RuntimeError):
    """The batcher holds as many paragraphs as it may: the request is refused at once (503)."""

    def __init__(self, waiting: int, retry_after: int):
        super().__init__(f"the service is busy: {waiting} paragraphs are waiting; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request: its texts and contexts, how many have gone to the model, and their results."""
    texts: list[str]
    contexts: Contexts
    future: Future
    seq: int
    taken: int = 0
    done: int = 0
    results: list = dataclass_field(default_factory=list)

    @property
    def left(self) -> int:
        return len(self.texts) - self.taken


Chunk = tuple[Job, int, int]  # a job's paragraphs [start, end) in one model batch


class Batcher:
    """One worker thread runs the queued requests through the model in batches, fairly.

    A request is cut into chunks, so a batch is at most `max_paragraphs` paragraphs and about
    `max_chars` characters (the model's cost), and each batch is filled in this order:
    - the oldest waiting request first, for up to a quarter of the batch: a large request always
      moves on, however many small ones keep arriving (no starvation);
    - then the others, fewest paragraphs left first: a single paragraph waits for at most the batch
      in progress, never behind a whole report.
    A request is taken when at most `max_queued` paragraphs would go to the model before or beside
    it: every waiting request counts up to the new one's size, since one with more left is served
    after it (a large request is taken only into an empty queue, and a single paragraph is not
    refused because a whole report is waiting). Otherwise `submit` raises QueueFull at once, with
    a Retry-After estimated from recent batches.
    Each request's results are handed back when its last chunk is done. A request whose client has
    hung up (`gone`, asked every `poll` seconds while it waits) is dropped with what it has left, so
    an abandoned whole report stops taking its share of the batches. `close()` lets the worker
    finish what was accepted, then stop; nothing is accepted after it."""

    def __init__(self, predict: Callable[..., list[Prediction]], wait_ms: float, max_paragraphs: int,
                 max_chars: int = 3_000, max_queued: int = 1024, poll: float = 0.25):
        self.predict, self.wait, self.max_paragraphs, self.poll = predict, wait_ms / 1000, max_paragraphs, poll
        self.max_chars, self.max_queued = max_chars, max_queued
        self.pending: list[Job] = []
        self.seconds_per_paragraph = 0.05  # recent model time per paragraph, for Retry-After
        self.closed, self.cond, self.seq = False, threading.Condition(), 0
        self.thread = threading.Thread(target=self._run, name="renda-batcher", daemon=True)
        self.thread.start()

    def submit(self, texts: list[str], contexts: Contexts = None, gone: Callable[[], bool] | None = None) -> list[Prediction]:
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts")
        if not texts:
            return []
        future: Future = Future()
        with self.cond:
            if self.closed:  # nobody would answer it
                raise BatcherClosed("the model service has stopped")
            if self.pending and (ahead := self.ahead_of(len(texts))) + len(texts) > self.max_queued:
                raise QueueFull(self.queued, self.retry_after(ahead + len(texts) - self.max_queued))
            self.seq += 1
            job = Job(texts, contexts, future, self.seq, results=[None] * len(texts))
            self.pending.append(job)
            self.cond.notify()
        while True:
            try:
                return future.result(timeout=self.poll if gone else None)
            except FuturesTimeout:
                if gone():
                    self.drop(job)

    def drop(self, job: Job) -> None:
        """Take a waiting job out of the queue (its client hung up); a batch that holds some of its
        paragraphs finishes, and their results go nowhere."""
        with self.cond:
            if job in self.pending:
                self.pending.remove(job)
                log.info("client gone: %d of %d paragraphs not computed", job.left, len(job.texts))
                job.future.set_exception(ClientGone("the client hung up"))

    @property
    def queued(self) -> int:
        """Paragraphs accepted and not yet given to the model (a dropped job's with it)."""
        return sum(job.left for job in self.pending)

    def ahead_of(self, size: int) -> int:
        """Waiting paragraphs a new request of `size` would wait for (the lock held): fewest-left first,
        so a request with more left delays it by `size` of its own at most (the oldest's share aside)."""
        return sum(min(job.left, size) for job in self.pending)

    def retry_after(self, excess: int) -> int:
        """Seconds until `excess` waiting paragraphs have gone to the model, at the recent pace: the
        room a refused request needs (the whole queue ahead of it is more than it has to wait for)."""
        return max(1, min(60, math.ceil(excess * self.seconds_per_paragraph)))

    def waiting(self) -> int:
        """Requests accepted and not yet answered."""
        with self.cond:
            return len(self.pending)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def _take(self) -> list[Chunk]:
        """The next batch's chunks (the lock held; some job has paragraphs left): the oldest job's
        reserved share, the others fewest-left first, then the oldest again into any room left."""
        chunks: list[Chunk] = []
        room, chars = self.max_paragraphs, self.max_chars
        waiting = [job for job in self.pending if job.left]
        oldest = min(waiting, key=lambda job: job.seq)
        others = sorted((job for job in waiting if job is not oldest), key=lambda job: (job.left, job.seq))
        for job, share in [(oldest, max(1, self.max_paragraphs // 4)), *((job, None) for job in others), (oldest, None)]:
            n, limit = 0, min(room, job.left, share or room)
            # a paragraph longer than the whole character budget still goes, alone, as a batch's first
            while n < limit and (len(job.texts[job.taken + n]) <= chars or not chunks and n == 0):
                chars -= len(job.texts[job.taken + n])
                n += 1
            if n:
                chunks.append((job, job.taken, job.taken + n))
                job.taken += n
                room -= n
            if room == 0 or chars <= 0:
                break
        return chunks

    def _next(self) -> list[Chunk] | None:
        """Waits for work; None once closed and everything accepted is done."""
        with self.cond:
            while not self.queued:
                if self.closed:
                    return None
                self.cond.wait()
            if self.wait:  # gather: let more requests arrive before the batch is cut
                deadline = time.monotonic() + self.wait
                while self.queued < self.max_paragraphs and (left := deadline - time.monotonic()) > 0:
                    self.cond.wait(left)
            return self._take()

    def _predict(self, chunks: list[Chunk]) -> list[Prediction]:
        texts = [t for job, start, end in chunks for t in job.texts[start:end]]
        if all(job.contexts is None for job, _, _ in chunks):
            return self.predict(texts)  # no request sent context: the plain call
        contexts = [list(job.contexts[i]) if job.contexts is not None else [] for job, start, end in chunks for i in range(start, end)]
        return self.predict(texts, contexts)

    def _run(self) -> None:
        while (chunks := self._next()) is not None:
            started = time.monotonic()
            try:
                predictions = self._predict(chunks)
            except Exception as error:  # every request in the batch learns of it; the worker lives on
                log.exception("prediction failed")
                with self.cond:
                    for job, _, _ in chunks:
                        if job in self.pending:
                            self.pending.remove(job)
                            job.future.set_exception(error)
                continue
            size = len(predictions)
            self.seconds_per_paragraph = 0.8 * self.seconds_per_paragraph + 0.2 * (time.monotonic() - started) / max(size, 1)
            at = 0
            with self.cond:
                for job, start, end in chunks:
                    job.results[start:end] = predictions[at: at + end - start]
                    at += end - start
                    job.done += end - start
                    if job.done == len(job.texts) and job in self.pending:  # not if dropped meanwhile
                        self.pending.remove(job)
                        job.future.set_result(job.results)


class ModelService:
    """Holds the predictor; `ready` once it has loaded and answered a probe."""

    def __init__(self, load: Callable[[], Predictor], batch_wait_ms: float = 0.0, max_batch_paragraphs: int = 16,
                 max_batch_chars: int = 3_000, max_queue_paragraphs: int = 1024):
        self._load, self.batch_wait_ms, self.max_batch = load, batch_wait_ms, max_batch_paragraphs
        self.max_batch_chars, self.max_queue = max_batch_chars, max_queue_paragraphs
        self.predictor: Predictor | None = None
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.ready = threading.Event()
        self.swap_lock = threading.Lock()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._start, name="renda-model-loader", daemon=True)
        thread.start()
        return thread

    def _start(self) -> None:
        try:
            started = time.monotonic()
            predictor = self.load_checked()
            self.predictor = predictor
            self.batcher = self._batcher(predictor)
            self.ready.set()
            log.info("model %s ready in %.1f s", predictor.model_id, time.monotonic() - started)
        except Exception as error:
            self.error = " ".join(f"{type(error).__name__}: {error}".split())  # one line: /readyz shows it
            # The reason, not a traceback (an expected state: a missing or broken folder); LOG_LEVEL=DEBUG adds it.
            log.error("model failed to load: %s", self.error, exc_info=log.isEnabledFor(logging.DEBUG))

    def load_checked(self) -> Predictor:
        predictor = self._load()
        predictor.predict(["坚持党的领导。"])  # a probe: loaded *and* answering
        return predictor

    def _batcher(self, predictor: Predictor) -> Batcher:
        return Batcher(predictor.predict, self.batch_wait_ms, self.max_batch, self.max_batch_chars, self.max_queue)

    def swap(self, predictor: Predictor) -> None:
        """Serve `predictor` from now on, without a restart: requests already submitted finish on
        the old model (its batcher runs out what it accepted, then stops); new ones go to the new."""
        with self.swap_lock:
            old, self.batcher = self.batcher, self._batcher(predictor)
            self.predictor = predictor
        if old is not None:
            old.close()
        log.info("model %s now serving", predictor.model_id)

    def current(self) -> tuple[Predictor, Batcher]:
        """The predictor and its batcher, taken together (a swap changes both at once)."""
        self.require()
        with self.swap_lock:
            predictor, batcher = self.predictor, self.batcher
        if predictor is None or batcher is None:
            raise ModelNotReady("the model service has stopped")
        return predictor, batcher

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
        return self.classify_with(texts, contexts)[1]

    def classify_with(self, texts: list[str], contexts: Contexts = None,
                      gone: Callable[[], bool] | None = None) -> tuple[Predictor, list[Prediction]]:
        """(the predictor that answered, its predictions): one model answers a whole call, even
        across a swap (a call that met a batcher closed by a swap goes once more, to the new one).
        `gone`: whether the caller has hung up (then ClientGone, and its paragraphs are dropped)."""
        for attempt in range(2):
            predictor, batcher = self.current()
            try:
                return predictor, batcher.submit(texts, contexts, gone)
            except BatcherClosed:
                if attempt or not self.ready.is_set() or self.batcher is batcher:
                    raise
        raise AssertionError("unreachable")
