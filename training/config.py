"""Typed training configuration read from training/config.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONFIG_FILE = Path(__file__).resolve().parent / "config.toml"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_model: str = ""
    max_length: int = Field(128, ge=16, le=512)
    stride: int = Field(32, ge=0)
    text_prefix: str = ""
    pooling: Literal["mean", "cls"] = "cls"
    starter_weight: float = Field(1.0, gt=0, description="loss weight of starter-corpus paragraphs against real ones")
    context_dropout: float = Field(0.5, ge=0, le=1, description="share of training rows read without their heading path")
    ngram_context_dropout: float = Field(0.3, ge=0, le=1, description="the same for the n-gram model (its own best value)")
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    epochs: int = Field(8, ge=1)
    learning_rate: float = Field(1.5e-4, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    freeze_embeddings: bool = True
    layers: int = Field(0, ge=0, description="keep the bottom N of the base model's layers; 0 = all")
    freeze_layers: int = Field(0, ge=0, description="embeddings and the bottom N layers frozen, their outputs cached; 0 = train all")
    fusion: bool = Field(False, description="serve the encoder averaged with an n-gram model trained beside it (weights fitted on dev)")
    plans_judge: bool = Field(False, description="a paragraph read alone takes P(plans) from an n-gram model trained on that one question")
    plans_judge_units: Literal["words", "chars"] = Field("words", description="the plans judge's n-grams: of the encoder tokenizer's words, or of characters")
    plans_judge_starter_weight: float = Field(1.0, gt=0, description="the plans judge's weight of a starter-corpus paragraph against a real one (its row weights scaled to a mean of 1)")
    class_weighting: bool = True
    patience: int = Field(3, ge=1)
    seed: int = 13
    max_minutes: float = Field(27, gt=0)
    max_steps: int = Field(0, ge=0, description="0 = no limit; tests use a few steps")


def load_config(path: Path | str = CONFIG_FILE, **overrides) -> TrainConfig:
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**raw)


def parse_setting(value: str) -> tuple[str, str]:
    """KEY=VALUE, the key naming a training setting (TrainConfig checks the value when loaded)."""
    key, sep, raw = value.partition("=")
    if not sep or key not in TrainConfig.model_fields:
        raise ValueError(f"{value!r}: expected KEY=VALUE with KEY one of {', '.join(TrainConfig.model_fields)}")
    return key, raw
