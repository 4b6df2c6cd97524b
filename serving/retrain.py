""""Retrain on corrections" from the page: one training at a time, in a background process
(`renda retrain`: the configured corpus plus the corrections folder, the same code as `make train`),
its progress read from the lines it prints, and the new model swapped in when it has published.

The training process publishes the model folder only when it finishes (training/train.py), so a
failed or killed run leaves the served model serving; the service then says what happened."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from renda.settings import Settings
from serving.service import ModelService

log = logging.getLogger("renda.retrain")


class RetrainBusy(RuntimeError):
    """A training is already running (409)."""


def model_summary(predictor) -> dict:
    info = getattr(predictor, "info", {}) or {}
    return {"model": predictor.model_id, "held_out_metrics": info.get("test_metrics") or {},
            "dev_macro_f1": info.get("dev_macro_f1"), "trained_at": info.get("trained_at")}


class Retrainer:
    def __init__(self, settings: Settings, model_dir: Path, service: ModelService):
        self.settings, self.model_dir, self.service = settings, Path(model_dir), service
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.state: dict = {"status": "idle"}

    def command(self) -> list[str]:
        s = self.settings
        command = [sys.executable, "-m", "apps.cli", "retrain", "--corpus", *s.retrain_corpus,
                   "--corrections", str(s.corrections_dir), "--out", str(self.model_dir), "--base-model", s.base_model,
                   "--threads", str(s.threads), "--seed", str(s.seed)]
        for item in s.retrain_set:
            command += ["--set", item]
        return command + ([] if s.retrain_export else ["--no-export"])

    def epochs(self) -> int | None:
        try:
            from training.config import CONFIG_FILE, load_config, parse_setting

            return load_config(CONFIG_FILE, **dict(parse_setting(item) for item in self.settings.retrain_set)).epochs
        except Exception:  # progress only: never stops a retrain
            return None

    def start(self) -> dict:
        with self.lock:
            if self.state.get("status") == "running":
                raise RetrainBusy("a retrain is already running; one at a time")
            old = model_summary(self.service.require())
            corrections = sorted(Path(self.settings.corrections_dir).glob("*.jsonl"))
            self.state = {"status": "running", "phase": "training", "started": time.time(), "epoch": 0,
                          "epochs": self.epochs(), "dev_macro_f1": None, "old": old, "new": None, "message": "",
                          "corrections_files": len(corrections)}
            # The child reads its settings from the environment: the service's own build folder goes
            # with it, or its datasets would land in the default one whatever the service was given.
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "BUILD_DIR": str(self.settings.build_dir)}
            self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                            env=env, start_new_session=True)
            threading.Thread(target=self._watch, args=(self.process,), name="renda-retrain", daemon=True).start()
            return self.status()

    def _watch(self, process: subprocess.Popen) -> None:
        tail: deque[str] = deque(maxlen=20)
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            tail.append(line)
            if line.startswith("{") and '"epoch"' in line:
                try:
                    entry = json.loads(line)
                    with self.lock:
                        self.state.update(epoch=entry.get("epoch"), dev_macro_f1=entry.get("dev_macro_f1"))
                except ValueError:
                    pass
            elif line.startswith("model written to"):  # trained; the export (in staging) follows
                with self.lock:
                    self.state["phase"] = "exporting" if self.settings.retrain_export else "loading"
        code = process.wait()
        if code != 0:
            reason = next((t for t in reversed(tail) if "Error" in t or "error" in t), tail[-1] if tail else "")
            self._finish("failed", f"the training process ended with status {code}: {reason}"[:600] +
                         "; the served model is unchanged")
            return
        try:
            with self.lock:
                self.state["phase"] = "loading"
            predictor = self.service.load_checked()
            self.service.swap(predictor)
        except Exception as error:
            self._finish("failed", f"the new model did not load ({type(error).__name__}: {error}); the served model is unchanged")
            return
        self._finish("done", "the new model is serving", model_summary(predictor))

    def _finish(self, status: str, message: str, new: dict | None = None) -> None:
        with self.lock:
            self.state.update(status=status, message=message, new=new, phase=None, finished=time.time())
        (log.info if status == "done" else log.error)("retrain %s: %s", status, message)

    def status(self) -> dict:
        state = dict(self.state)
        if "started" in state:
            state["minutes"] = round(((state.get("finished") or time.time()) - state["started"]) / 60, 2)
        return state

    def stop(self) -> None:
        """At shutdown: a training still running is killed (its model was never published)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
