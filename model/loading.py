"""Loading a model folder: whichever kind it holds, calibrated, fused and checked. Apart from the
interface (model/predictor.py), which every model kind imports: the loader imports the kinds."""

from __future__ import annotations

from pathlib import Path

from model.predictor import Predictor, read_meta


def load_predictor(model_dir: Path | str, **options) -> Predictor:
    """Load whichever kind of model the directory holds, its scores calibrated by the temperatures
    fitted at training time (model/calibration.py) when the folder stores them, fused with the
    n-gram model it stores when its metadata says so (model/fused.py), and its paragraphs read alone
    judged plans-or-not by the plans judge it stores, when it has one (model/plans_judge.py). Every
    stored value is checked here (ValueError naming it), so a broken folder is refused at load,
    never inside a request."""
    from model.calibration import calibrated
    from model.reports import Combiner

    meta = read_meta(model_dir)  # once, passed down to the loaders
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind == "baseline":
        from model.baseline import BaselinePredictor

        predictor = calibrated(BaselinePredictor.load(model_dir, meta))
    elif kind == "bert":
        from model.backends import load_bert_predictor  # torch or ONNX, by the BACKEND setting

        predictor = as_served(load_bert_predictor(model_dir, meta=meta, **options), model_dir)
    else:
        raise ValueError(f"{model_dir}: unknown model kind {kind!r}")
    Combiner.from_meta(predictor.info)  # the whole-report weights, checked now
    return predictor


def as_served(encoder: Predictor, model_dir: Path | str) -> Predictor:
    """An encoder's raw predictor as its folder serves it: calibrated, fused, plans judged (each
    only when the folder's metadata has it). Training scores its held-out split through this too."""
    from model.calibration import calibrated
    from model.fused import with_fusion
    from model.plans_judge import with_plans_judge

    return with_plans_judge(with_fusion(calibrated(encoder), model_dir), model_dir)
