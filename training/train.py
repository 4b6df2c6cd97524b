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

from model.baseline import CHARS
from model.bert import TRAINING_CONFIG, BertPredictor, Features, PairEncoder, pad_features, set_threads
from model.calibration import as_arrays, calibrated, calibration_report, fit_temperature
from model.context import drop_context, path_text
from model.frozen import BottomCache, CachedBottomPredictor, freeze_bottom
from model.loading import as_served
from model.plans_judge import JUDGE_DIR
from model.predictor import META_FILE
from model.publish import check_replaceable, staged_directory
from renda.labels import LABELS
from renda.records import DataError, Record
from training.config import TrainConfig
from training.dataset import load_split, row_weights
from training.evaluate import evaluate_predictor, fit_report_combiner, held_out_metrics, predict_records
from training.model_card import write_model_card


FUSION_DIR = "ngram"  # the n-gram model of a fused folder, inside it


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
    if config.layers:  # more than the base has would add layers of random weights, silently
        from transformers import AutoConfig

        has = AutoConfig.from_pretrained(base_model).num_hidden_layers
        if config.layers > has:
            raise DataError("layers", f"keeps the bottom {config.layers} layers, but {base_model} has {has}")
    model = classifier_class(config.pooling).from_pretrained(
        base_model,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        **({"num_hidden_layers": config.layers} if config.layers else {}),  # the bottom N layers kept, the rest dropped
    )
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.freeze_layers:
        freeze_bottom(model, config.freeze_layers)
    return model, tokenizer


def bottom_cache_for(base_model: str, config: TrainConfig, shared: BottomCache | None = None) -> BottomCache | None:
    """The cache of frozen-bottom outputs a run uses: `shared` (cross-validation folds and recipes
    with the same frozen bottom) when it fits, else a new one; None when nothing is frozen."""
    if not config.freeze_layers:
        return None
    if shared is not None:
        shared.check(config.freeze_layers, base_model)
        return shared
    return BottomCache(config.freeze_layers, base_model)


def length_batches(lengths: list[int], batch_size: int, generator: torch.Generator, pool: int = 50) -> list[list[int]]:
    """Rows shuffled, then `pool` batches' worth at a time sorted by length and cut into batches, the
    batches shuffled again: each batch pads only to its own longest row, and the order stays random."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start: start + batch_size * pool], key=lengths.__getitem__)
        batches += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


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

    bottom: BottomCache | None = None
    minutes: float = 0.0

    def predictor(self, meta: dict, config: TrainConfig) -> BertPredictor:
        return windowed_predictor(self.model, self.tokenizer, meta, config, self.bottom)


def windowed_predictor(model, tokenizer, meta: dict, config: TrainConfig, bottom: BottomCache | None = None) -> BertPredictor:
    """An in-memory model behind the same windowed predictor a published folder gets (its frozen
    bottom read from `bottom` when given: the same scores, computed once per window)."""
    window = (model, tokenizer, meta, config.max_length, config.stride, config.text_prefix, config.eval_batch_size)
    return CachedBottomPredictor(*window, bottom=bottom) if bottom is not None else BertPredictor(*window)


def training_logits(model, windows: list[Features], pad_id: int, bottom: BottomCache | None) -> torch.Tensor:
    """Logits of a batch of unpadded windows: the cached bottom and the top layers, or the whole model."""
    if bottom is not None:
        return bottom.logits(model, windows)
    return model(**{k: torch.from_numpy(v) for k, v in pad_features(windows, pad_id).items()}).logits


def dev_score(predictor, dev: list[Record]) -> dict:
    """Early stopping looks at both uses: the mean macro-F1 with and without the heading path."""
    if not dev:
        return {"macro_f1": 0.0, "accuracy": 0.0}
    runs = [evaluate_predictor("dev", predictor, dev, context).metrics for context in (True, False)]
    return {key: round(float(np.mean([m[key] for m in runs])), 4) for key in ("macro_f1", "accuracy")}


def fine_tune(train: list[Record], dev: list[Record], base_model: str, config: TrainConfig,
              meta: dict | None = None, progress: bool = True, bottom: BottomCache | None = None) -> FineTuned:
    """The training loop alone: no files written. Keeps the weights of the best dev epoch.
    `bottom`: a cache of frozen-bottom outputs to share (cross-validation); else one of its own."""
    started = time.monotonic()
    seed_everything(config.seed)
    model, tokenizer = build_model(base_model, config)
    bottom = bottom_cache_for(base_model, config, bottom)
    meta = meta or {"kind": "bert", "labels": LABELS}
    label_weight = class_weights(train) if config.class_weighting else torch.ones(len(LABELS))
    row_weight = torch.tensor(row_weights(train, config.starter_weight))
    targets = torch.tensor([LABELS.index(r.label) for r in train])
    steps_per_epoch = (len(train) + config.batch_size - 1) // config.batch_size
    total_steps = steps_per_epoch * config.epochs if not config.max_steps else min(config.max_steps, steps_per_epoch * config.epochs)
    optimizer, schedule = make_optimizer(model, config, total_steps)
    generator = torch.Generator().manual_seed(config.seed)
    # Each row tokenized once, with its heading path and without: context dropout picks one per epoch.
    pairs, dropout_rng = PairEncoder(tokenizer, config.max_length, config.text_prefix), random.Random(config.seed)
    texts = [r.text for r in train]
    with_path = pairs.first_windows([path_text(r.heading_path) for r in train], texts)
    alone = pairs.first_windows([""] * len(train), texts)
    pad_id = tokenizer.pad_token_id or 0
    log: list[dict] = []
    best_f1, best_epoch, best_state, stale, step = -1.0, 0, None, 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        keep = drop_context(["path"] * len(train), config.context_dropout, dropout_rng)
        windows = [w if k else a for w, a, k in zip(with_path, alone, keep)]
        losses = []
        batches = length_batches([len(w["input_ids"]) for w in windows], config.batch_size, generator)
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for rows in bar:
            logits = training_logits(model, [windows[i] for i in rows], pad_id, bottom)
            loss = weighted_loss(logits, targets[rows], label_weight, row_weight[rows])
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
        dev_metrics = dev_score(windowed_predictor(model, tokenizer, meta, config, bottom), dev)
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
    return FineTuned(model.eval(), tokenizer, log, best_epoch, best_f1, bottom, round((time.monotonic() - started) / 60, 2))


def fit_dev_temperatures(predictor, dev: list[Record]) -> dict[str, float]:
    """Temperature scaling fitted on dev predictions for each mode a paragraph is read in: with
    its heading path (`temperature`) and alone (`temperature_alone`)."""
    if not dev:
        return {"temperature": 1.0, "temperature_alone": 1.0}
    gold = [r.label for r in dev]
    return {key: fit_temperature(*as_arrays(predict_records(predictor, dev, context), gold, predictor.labels))
            for key, context in (("temperature", True), ("temperature_alone", False))}


def held_out_calibration(raw, test: list[Record], meta: dict, folder: Path) -> dict:
    """ECE before and after scaling on the held-out split, per mode, with a reliability diagram each."""
    gold = [r.label for r in test]
    return {mode: calibration_report(predict_records(raw, test, context), gold, raw.labels, meta[key], folder / png)
            for mode, context, key, png in (("path", True, "temperature", "reliability.png"),
                                            ("alone", False, "temperature_alone", "reliability-alone.png"))}


def train_bert(dataset_dir: Path, out_dir: Path, base_model: str, config: TrainConfig,
               threads: int = 0, data_summary: dict | None = None, progress: bool = True, fingerprint: str = "") -> dict:
    """Train, evaluate on the held-out split, and publish to `out_dir`. Returns the test metrics."""
    check_replaceable(out_dir, (META_FILE,))  # before the minutes of training: publishing would remove what is there
    started = time.monotonic()
    set_threads(threads)
    train, dev, test = (load_split(dataset_dir, s) for s in ("train", "dev", "test"))
    meta = {
        "kind": "bert",
        "labels": LABELS,
        "model_id": f"{out_dir.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}",
        "base_model": base_model,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(Path(dataset_dir).resolve()),  # absolute: `renda export` may run from another folder
        "fingerprint": fingerprint,
    }
    tuned = fine_tune(train, dev, base_model, config, meta, progress)
    # Temperatures first: the fusion and whole-report weights are fitted on the calibrated scores the model will serve.
    meta.update(fit_dev_temperatures(tuned.predictor(meta, config), dev))
    served, ngram = calibrated(tuned.predictor(meta, config)), None
    if config.fusion:  # the n-gram model on the same training split, averaged in with weights fitted on dev
        from training.recipes import fit_baseline, fuse

        ngram = fit_baseline(train, config.seed, {"model_id": "ngram", "dataset": str(dataset_dir)}, config=config)
        served = fuse(served, ngram, dev)
        meta["fusion"] = {"model": FUSION_DIR, "weight": served.weight, "weight_alone": served.weight_alone}
    judge = None
    if config.plans_judge:  # paragraphs read alone: P(plans) from a model of that one question, on the same split
        from training.recipes import judge as plans_judged

        served = plans_judged(served, train, dev, config, {"dataset": str(dataset_dir)})
        judge = served.judge
        meta["plans_judge"] = {"model": JUDGE_DIR, "units": judge.info.get("units", CHARS), "temperature": served.temperature}
    meta["combiner"] = fit_report_combiner(served, dev, "dev").to_dict()
    with staged_directory(out_dir, (META_FILE,)) as staging:
        tuned.model.save_pretrained(staging)
        tuned.tokenizer.save_pretrained(staging)
        (staging / TRAINING_CONFIG).write_text(json.dumps({**config.model_dump(), "base_model": base_model}, indent=2), encoding="utf-8")
        (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")  # to load it back
        for folder, part in ((FUSION_DIR, ngram), (JUDGE_DIR, judge)):
            if part is not None:
                (staging / folder).mkdir()
                part.save(staging / folder)
        best = BertPredictor.load(staging, batch_size=config.eval_batch_size)
        held_out = held_out_metrics(as_served(best, staging), test)  # as load_predictor serves it
        if test:  # ECE of the raw and the scaled scores on the held-out split, per mode
            by_mode = held_out_calibration(best, test, meta, staging)
            held_out["calibration"], held_out["alone"]["calibration"] = by_mode["path"], by_mode["alone"]
        meta.update(
            best_epoch=tuned.best_epoch,
            epochs_run=len(tuned.log),
            fine_tune_minutes=tuned.minutes,
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
