"""The n-gram recipe, the fusion of two models and the plans judge: shared by training and the
pipeline's steps (the baseline, cross-validation), so neither imports the other."""

from __future__ import annotations

from datetime import datetime, timezone

from model.baseline import WORDS, BaselinePredictor
from renda.labels import LABELS
from renda.records import Record
from training.dataset import row_weights
from training.evaluate import fit_report_combiner


def shared_settings():
    """The input settings of training/config.toml the n-gram recipe reads too: its own context
    dropout (`ngram_context_dropout`) and the starter corpus's weight."""
    from training.config import load_config

    return load_config()


def fit_baseline(records: list[Record], seed: int, extra: dict | None = None, dev: list[Record] | None = None,
                 config=None) -> BaselinePredictor:
    """The n-gram recipe on the paragraphs and their heading paths; whole-report weights from `dev`."""
    config = config or shared_settings()
    meta = {"kind": "baseline", "labels": LABELS, "model_id": "baseline-tfidf-char-lr", "starter_weight": config.starter_weight,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
    model = BaselinePredictor.fit([r.text for r in records], [r.label for r in records], LABELS, seed, meta,
                                  [r.heading_path or [] for r in records], config.ngram_context_dropout,
                                  row_weights(records, config.starter_weight))
    if dev:
        model.info["combiner"] = fit_report_combiner(model, dev, "dev").to_dict()
    return model


def fuse(encoder, ngram: BaselinePredictor, dev: list[Record]):
    """The encoder and the n-gram model averaged, the encoder's share per mode fitted on `dev`
    (its whole-report weights are the caller's to fit)."""
    from model.fused import FusedPredictor, fit_fusion

    weights = fit_fusion(encoder, ngram, [r.text for r in dev], [r.heading_path or [] for r in dev], [r.label for r in dev])
    return FusedPredictor(encoder, ngram, info={**encoder.info, **weights}, **weights)


def judge(encoder, train: list[Record], dev: list[Record], config, meta: dict | None = None):
    """`encoder` with its paragraphs read alone judged plans-or-not (model/plans_judge.py): the judge
    fitted on `train` (starter rows weighted by `plans_judge_starter_weight`), its temperature on `dev` read alone."""
    from model.plans_judge import PlansJudged, fit_plans_judge

    tokenizer = encoder.tokenizer if config.plans_judge_units == WORDS else None
    judged = PlansJudged(encoder, fit_plans_judge(train, config.seed, meta, row_weights(train, config.plans_judge_starter_weight), tokenizer))
    judged.fit_temperature([r.text for r in dev], [r.label for r in dev])
    return judged
