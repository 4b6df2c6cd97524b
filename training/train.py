"""Fine-tune a BERT-family encoder on the labelled dataset; publish only a finished model.

A small, readable loop (in the spirit of setfit's trainer): class-weighted cross-entropy, two
learning rates (encoder, fresh head), linear warm-up and decay, early stopping on dev macro-F1,
a per-epoch log, and the best epoch kept. Everything is written into a staging folder that
replaces the model folder by rename only after training and the held-out evaluation succeeded.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from model.bert import TRAINING_CONFIG, BertPredictor, PairEncoder, set_threads
from model.calibration import as_arrays, calibrated, calibration_report, fit_temperature
from model.context import drop_context, path_text
from model.predictor import META_FILE
from model.publish import staged_directory
from renda.labels import LABELS
from renda.records import Record
from training.config import TrainConfig
from training.dataset import load_split, row_weights
from training.evaluate import evaluate_predictor, fit_report_combiner, held_out_metrics, predict_records
from training.model_card import write_model_card


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(records: list[Record]) -> torch.Tensor:
    """Inverse frequency, normalised to mean 1 over the labels present; absent labels get 1."""
    counts = np.array([sum(r.label == label for r in records) for label in LABELS], dtype=float)
    present = counts > 0
    weights = np.ones(len(LABELS))
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float)


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, label_weight: torch.Tensor, row_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weighted by label (rare labels count more) and by row (real reports over
    starter ones), normalised by the total weight as CrossEntropyLoss(weight=…) is."""
    weight = label_weight[targets] * row_weight
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return (losses * weight).sum() / weight.sum()


def build_model(base_model: str, config: TrainConfig):
    from transformers import AutoTokenizer

    from model.pooling import classifier_class

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = classifier_class(config.pooling).from_pretrained(
        base_model,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model, tokenizer


def make_optimizer(model, config: TrainConfig, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    # The pretrained encoder learns gently; the fresh pooler and classifier need a larger rate.
    encoder = model.base_model
    pooler = getattr(encoder, "pooler", None)
    fresh = {id(p) for p in pooler.parameters()} if pooler is not None else set()
    pretrained = {id(p) for p in encoder.parameters()} - fresh
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) in pretrained], "lr": config.learning_rate},
        {"params": [p for p in trainable if id(p) not in pretrained], "lr": config.head_learning_rate},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), max(total_steps, 1))
    return optimizer, schedule


@dataclass
class FineTuned:
    """A trained model in memory, with its best epoch's weights loaded, and its per-epoch log."""
    model: object
    tokenizer: object
    log: list[dict]
    best_epoch: int
    best_f1: float

    def predictor(self, meta: dict, config: TrainConfig) -> BertPredictor:
        return windowed_predictor(self.model, self.tokenizer, meta, config)


def windowed_predictor(model, tokenizer, meta: dict, config: TrainConfig) -> BertPredictor:
    """An in-memory model behind the same windowed predictor a published folder gets."""
    return BertPredictor(model, tokenizer, meta, config.max_length, config.stride, config.text_prefix, config.eval_batch_size)


def dev_score(predictor, dev: list[Record]) -> dict:
    """Early stopping looks at both uses: the mean macro-F1 with and without the heading path."""
    if not dev:
        return {"macro_f1": 0.0, "accuracy": 0.0}
    runs = [evaluate_predictor("dev", predictor, dev, context).metrics for context in (True, False)]
    return {key: round(float(np.mean([m[key] for m in runs])), 4) for key in ("macro_f1", "accuracy")}


def fine_tune(train: list[Record], dev: list[Record], base_model: str, config: TrainConfig,
              meta: dict | None = None, progress: bool = True) -> FineTuned:
    """The training loop alone: no files written. Keeps the weights of the best dev epoch."""
    started = time.monotonic()
    seed_everything(config.seed)
    model, tokenizer = build_model(base_model, config)
    meta = meta or {"kind": "bert", "labels": LABELS}
    label_weight = class_weights(train) if config.class_weighting else torch.ones(len(LABELS))
    row_weight = torch.tensor(row_weights(train, config.starter_weight))
    steps_per_epoch = (len(train) + config.batch_size - 1) // config.batch_size
    total_steps = steps_per_epoch * config.epochs if not config.max_steps else min(config.max_steps, steps_per_epoch * config.epochs)
    optimizer, schedule = make_optimizer(model, config, total_steps)
    generator = torch.Generator().manual_seed(config.seed)
    pairs, dropout_rng = PairEncoder(tokenizer, config.max_length, config.text_prefix), random.Random(config.seed)
    log: list[dict] = []
    best_f1, best_epoch, best_state, stale, step = -1.0, 0, None, 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        losses = []
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for start in bar:
            rows = order[start: start + config.batch_size]
            batch = [train[i] for i in rows]
            paths = drop_context([path_text(r.heading_path) for r in batch], config.context_dropout, dropout_rng)
            inputs = pairs(paths, [r.text for r in batch])
            targets = torch.tensor([LABELS.index(r.label) for r in batch])
            loss = weighted_loss(model(**inputs).logits, targets, label_weight, row_weight[rows])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            step += 1
            if config.max_steps and step >= config.max_steps:
                break
        dev_metrics = dev_score(windowed_predictor(model, tokenizer, meta, config), dev)
        entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "dev_macro_f1": dev_metrics["macro_f1"],
                 "dev_accuracy": dev_metrics["accuracy"], "minutes": round((time.monotonic() - started) / 60, 2)}
        log.append(entry)
        if progress:
            print(json.dumps(entry), flush=True)
        if dev_metrics["macro_f1"] > best_f1:
            best_f1, best_epoch, stale = dev_metrics["macro_f1"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # keep the best epoch
        else:
            stale += 1
        minutes = (time.monotonic() - started) / 60
        if stale >= config.patience or (config.max_steps and step >= config.max_steps) or minutes + minutes / epoch > config.max_minutes:
            break
    model.load_state_dict(best_state)
    return FineTuned(model.eval(), tokenizer, log, best_epoch, best_f1)


def fit_dev_temperature(predictor, dev: list[Record]) -> float:
    """Temperature scaling fitted on dev predictions read with their heading paths (as served)."""
    if not dev:
        return 1.0
    return fit_temperature(*as_arrays(predict_records(predictor, dev), [r.label for r in dev], predictor.labels))


def train_bert(dataset_dir: Path, out_dir: Path, base_model: str, config: TrainConfig,
               threads: int = 0, data_summary: dict | None = None, progress: bool = True, fingerprint: str = "") -> dict:
    """Train, evaluate on the held-out split, and publish to `out_dir`. Returns the test metrics."""
    started = time.monotonic()
    set_threads(threads)
    train, dev, test = (load_split(dataset_dir, s) for s in ("train", "dev", "test"))
    meta = {
        "kind": "bert",
        "labels": LABELS,
        "model_id": f"{out_dir.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}",
        "base_model": base_model,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(dataset_dir),
        "fingerprint": fingerprint,
    }
    tuned = fine_tune(train, dev, base_model, config, meta, progress)
    # Temperature first: the whole-report weights are fitted on the calibrated scores the model will serve.
    meta["temperature"] = fit_dev_temperature(tuned.predictor(meta, config), dev)
    meta["combiner"] = fit_report_combiner(calibrated(tuned.predictor(meta, config), meta["temperature"]), dev, "dev").to_dict()
    with staged_directory(out_dir) as staging:
        tuned.model.save_pretrained(staging)
        tuned.tokenizer.save_pretrained(staging)
        (staging / TRAINING_CONFIG).write_text(json.dumps({**config.model_dump(), "base_model": base_model}, indent=2), encoding="utf-8")
        (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")  # to load it back
        best = BertPredictor.load(staging, batch_size=config.eval_batch_size)
        held_out = held_out_metrics(calibrated(best, meta["temperature"]), test)
        if test:  # ECE of the raw and the scaled scores on the held-out split, and the reliability diagram
            held_out["calibration"] = calibration_report(predict_records(best, test), [r.label for r in test], best.labels,
                                                         meta["temperature"], staging / "reliability.png")
        meta.update(
            best_epoch=tuned.best_epoch,
            dev_macro_f1=tuned.best_f1,
            test_metrics=held_out,
            train_minutes=round((time.monotonic() - started) / 60, 2),
            threads=torch.get_num_threads(),
            data=data_summary or {},
        )
        (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        (staging / "metrics.json").write_text(json.dumps(held_out, ensure_ascii=False, indent=2), encoding="utf-8")
        (staging / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in tuned.log), encoding="utf-8")
        write_model_card(staging, meta, config, tuned.log)
    return held_out
