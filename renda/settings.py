"""All configuration in one typed place: environment variables (prefix-free, as the Makefile
passes them) with defaults. Training hyperparameters live in training/config.toml (`TrainConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", protected_namespaces=())

    # Pipeline
    seed: int = 13
    starter_dir: Path = ROOT / "data" / "starter"  # the project's own fictional reports
    build_dir: Path = ROOT / "build"
    models_dir: Path = ROOT / "models"
    model_dir: Path = ROOT / "models" / "bert"
    baseline_dir: Path = ROOT / "models" / "baseline"
    base_model: str = str(ROOT / "models" / "base" / "multilingual-e5-small")
    dev_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")

    # Inference (BERT models: the service, the CLI, evaluation)
    backend: Literal["auto", "torch", "onnx", "onnx-fused", "onnx-int8"] = Field(
        "auto", description="auto: the fastest backend that passed the parity check at export (onnx_parity.json), else torch")
    cache_size: int = Field(4096, ge=0, description="recent paragraph results kept (LRU); 0 = no cache")
    # Measured (make bench's profile, ONNX fp32, 2 cores, 32 paragraphs a call): 4096 padded 34 % of the
    # tokens computed and ran 47 paragraphs/s; 256 padded 4 % and ran 79. Small batches of like lengths win here.
    max_batch_tokens: int = Field(256, ge=1, description="token budget of one model batch: rows × the longest row")
    int8_rows_apart: bool = Field(True, description="the int8 backend computes each window in a batch of its own, so a "
                                                    "paragraph's scores never depend on what was batched with it; false: "
                                                    "token-budget batches (about 8 % faster at 32 paragraphs a call)")
    first_window: bool = Field(True, description="a long paragraph's other windows read only when its first is unsure "
                                                 "(the threshold the export chose on dev, onnx_parity.json); false: every window")

    # Service
    host: str = "127.0.0.1"
    port: int = 8000
    max_paragraphs: int = Field(256, ge=1)
    max_paragraph_chars: int = Field(20_000, ge=1)
    max_report_chars: int = Field(300_000, ge=1)
    # POST /v1/explain reads the paragraph once whole and once without each sentence and heading: the
    # characters of all those readings at most (a paragraph of 1,000 characters and 30 sentences reads 31,000)
    max_explain_chars: int = Field(60_000, ge=1, description="characters an explanation reads in all (its variants)")
    max_body_bytes: int = Field(2_000_000, ge=1024)
    # 0: greedy batching — each batch is what queued while the previous one ran (measured best)
    batch_wait_ms: float = Field(0.0, ge=0, description="how long the batcher waits to gather more requests")
    # Fair scheduling: requests are cut into chunks of at most this many paragraphs and characters a model
    # batch, so a single paragraph waits for one batch at most (a few tenths of a second), never for a whole
    # report. Measured (make bench-load, interactive): 64 paragraphs / 20,000 characters made single
    # paragraphs wait 1.6 s (p50); 16 / 3,000 gave 0.66 s at the same paragraphs/s.
    max_batch_paragraphs: int = Field(16, ge=1)
    max_batch_chars: int = Field(3_000, ge=100, description="characters of paragraphs in one model batch (a longer paragraph goes alone)")
    max_queue_paragraphs: int = Field(1024, ge=1, description="paragraphs waiting at most; beyond, 503 with Retry-After at once")
    cors_origins: list[str] = Field(default_factory=list, description="empty: CORS off")
    # POST /v1/corrections appends reviewed labels here, one JSONL file per report (a training corpus)
    corrections_dir: Path = ROOT / "data" / "corrections"
    # Write actions (saving corrections, retraining) need `Authorization: Bearer <ADMIN_TOKEN>` when it is set
    admin_token: str | None = Field(None, description="at least 8 characters; unset: write actions are open (a service on localhost)")
    # "Retrain on corrections" (POST /v1/retrain): `renda retrain` on this corpus plus CORRECTIONS_DIR, published to MODEL_DIR
    retrain_corpus: list[str] = Field(default_factory=lambda: [str(ROOT / "data" / "starter")])
    retrain_set: list[str] = Field(default_factory=list, description="training settings for the retrain, KEY=VALUE")
    retrain_export: bool = Field(True, description="export and check ONNX after retraining (else the new model serves on torch)")
    log_level: str = "INFO"

    # Reading report files (renda/readers.py: CLI, archive, uploads to the service)
    max_file_bytes: int = Field(20_000_000, ge=1024, description="a report file's size at most, checked before it is parsed")
    read_timeout_s: float = Field(30.0, gt=0, description="time to read one HTML / PDF / .docx file; past it the reader is stopped")

    # Archive labelling (`renda label-archive`): one Parquet part per batch, so an interrupted run
    # redoes at most one batch of files
    archive_batch_files: int = Field(16, ge=1, description="report files per batch (and per Parquet part)")
    # --engine ray: the predictor runs in a pool of Ray actors, each loading the model once
    archive_actors: int = Field(0, ge=0, description="actors in the pool; 0 = one per GPU, else as many as the cluster's CPUs hold beside a parse task")
    archive_actor_cpus: float = Field(1.0, gt=0, description="CPUs per actor (its torch threads: this, rounded up)")
    archive_actor_gpus: float = Field(0.0, ge=0, description="GPUs per actor; 0 = CPU only")

    @field_validator("admin_token")
    @classmethod
    def _token_long_enough(cls, token: str | None) -> str | None:
        # an empty value is refused, not read as unset: ADMIN_TOKEN=$SECRET with SECRET missing must not open writes
        if token is not None and len(token) < 8:
            raise ValueError("needs at least 8 characters (to leave write actions open, unset it: an empty value is refused)")
        return token


class SettingsError(ValueError):
    """An environment variable the settings cannot take: named, in one line."""


def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:  # names the variable; never echoes its value (ADMIN_TOKEN is a secret)
        raise SettingsError("; ".join(f"environment variable {'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
                                      for e in error.errors())) from None
