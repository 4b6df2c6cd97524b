"""The ONNX Runtime backend: the trained encoder + head exported to ONNX (fp32) and a dynamically
quantised int8 copy, served through the same windows, batches and cache as the torch model.

Export is `torch.onnx.export(dynamo=True)` with the batch and sequence axes dynamic: the older
TorchScript tracer bakes the attention-mask code in as constants and disagrees with torch on 2–4%
of labels (measured, ../shared/ONNX.md). Quantisation is per channel and MatMul only: the
defaults miss the 0.995 label-agreement bar. Whether a file may be used is decided by the parity
check at export (training/export.py) and the backend choice (model/backends.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model.bert import WindowedPredictor, read_window_config
from model.predictor import read_meta
from renda.records import atomic_write

# onnx: the dynamo export, the source of most int8 variants; onnx-fused: the same model as ONNX
# Runtime's fused BERT operators, fp32 (export_fused_fp32); onnx-int8: the int8 variant kept.
ONNX_FILES = {"onnx": "model.onnx", "onnx-fused": "model.fused.onnx", "onnx-int8": "model.int8.onnx"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # those of them the tokenizer gives


def open_session(path: Path | str, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
    options.inter_op_num_threads = 1  # one graph at a time: the parallelism is inside each op
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxPredictor(WindowedPredictor):
    """The windowed predictor with an ONNX Runtime session for the forward pass."""

    def __init__(self, session, tokenizer, meta: dict, max_length: int, stride: int, prefix: str, backend: str,
                 max_batch_tokens: int, cache_size: int = 0):
        super().__init__(tokenizer, meta, max_length, stride, prefix, max_batch_tokens, cache_size)
        self.session, self.backend = session, backend
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def load(cls, model_dir: Path | str, backend: str = "onnx", threads: int | None = None,
             max_batch_tokens: int = 4096, cache_size: int = 0, meta: dict | None = None) -> "OnnxPredictor":
        from transformers import AutoTokenizer

        path = Path(model_dir) / ONNX_FILES[backend]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        meta = meta or read_meta(model_dir)
        max_length, stride, prefix = read_window_config(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(open_session(path, threads), tokenizer, meta, max_length, stride, prefix, backend, max_batch_tokens, cache_size)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], {name: batch[name] for name in self.input_names})[0]


def traced_inputs(model, tokenizer):
    """What an export traces: the classifier as a module from token ids (and mask, and type ids where
    the tokenizer gives them) to logits, in eval mode, and a sample of two rows of different lengths,
    so that neither axis is specialised to the sample's size; with the input names."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            return self.classifier(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    sample = tokenizer(["今后工作建议", ""], ["听取审议专项工作报告，开展执法检查。", "制定条例。"], padding=True, return_tensors="pt")
    return Logits(model).eval(), sample, [name for name in INPUTS if name in sample]


def export_fp32(model, tokenizer, path: Path) -> Path:
    """The classifier (token ids and mask → logits) as ONNX, batch and sequence length dynamic."""
    import torch

    module, sample, names = traced_inputs(model, tokenizer)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings():  # the exporter's notes on axis names and deprecations: not ours to act on
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (), kwargs={n: sample[n] for n in names}, dynamo=True,
                                    input_names=names, output_names=["logits"], verbose=False,
                                    dynamic_shapes={n: {0: batch, 1: sequence} for n in names})
    return atomic_write(path, lambda partial: program.save(partial, external_data=False))


def export_fused_fp32(model, tokenizer, path: Path) -> Path:
    """The classifier with ONNX Runtime's fused BERT operators (Attention, EmbedLayerNormalization,
    SkipLayerNormalization, BiasGelu): traced by the TorchScript exporter with the eager attention
    code, whose pattern ONNX Runtime's BERT optimizer recognises (the dynamo export's is not), then
    fused. The `onnx-fused` backend, and the source of an int8 variant; the parity check at export
    judges it like any other. Raises when the attention did not fuse, so it is recorded as failed."""
    import onnx
    import torch
    from onnxruntime.transformers import optimizer

    # The model's own mode (no dropout when served) and attention code are restored whatever happens.
    config = model.config
    before, training = config._attn_implementation, model.training
    module, sample, names = traced_inputs(model, tokenizer)
    model.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = path.with_name(path.name + ".traced")
            torch.onnx.export(module, tuple(sample[n] for n in names), str(traced), dynamo=False,
                              input_names=names, output_names=["logits"], opset_version=17,
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}})
    finally:
        model.set_attn_implementation(before)
        model.train(training)
    try:
        fused = optimizer.optimize_model(str(traced), model_type="bert", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size, opt_level=0)
    finally:
        traced.unlink(missing_ok=True)
    attention = sum(node.op_type == "Attention" for node in fused.model.graph.node)
    if attention != config.num_hidden_layers:
        raise RuntimeError(f"ONNX Runtime fused the attention of {attention} of {config.num_hidden_layers} layers")
    return atomic_write(path, lambda partial: onnx.save(fused.model, str(partial)))


# Dynamic int8 variants tried at export, each checked for parity (training/export.py). This CPU (AVX2,
# no VNNI) can saturate the default U8S8 products; ONNX Runtime's guide suggests reduce_range or U8U8.
# Only MatMuls are quantised: the embeddings (Gather) and the classifier (Gemm) stay fp32 in all.
# Tried and taken off the list, to keep make train within its 7 minutes (docs/performance.md): U8U8
# (the slowest, 0.975 agreement) and reduce_range on the weight MatMuls only (the same labels as
# reduce_range: dynamic quantisation already leaves the attention products fp32).
INT8_VARIANTS = {
    "per-channel": {},
    "per-channel, reduce_range": {"reduce_range": True},
    # Mixed precision: the MatMuls whose int8 error moves labels most stay fp32. Measured on real
    # paragraphs one role at a time (docs/performance.md): the FFN's output projection (its input,
    # the GELU's output, has the widest range) did most of the harm, then the values and the FFN's input.
    "per-channel, FFN output in fp32": {"fp32_roles": ("ffn_out",)},
    "per-channel, FFN output and values in fp32": {"fp32_roles": ("ffn_out", "value")},
    "per-channel, FFN and values in fp32": {"fp32_roles": ("ffn_out", "value", "ffn_in")},
    # Block-wise: 8-bit weights in blocks of 128 along the input (MatMulNBits), the activations
    # quantised per block at run time (accuracy level 4: int8 products), so one wide channel no
    # longer sets the scale of a whole tensor. Every weight MatMul int8.
    "block-wise 8-bit (MatMulNBits, blocks of 128)": {"block_bits": 8, "block_size": 128},
    # The same on ONNX Runtime's fused BERT graph (export_fused_fp32): the attention runs as one
    # operator (its projections fp32), every other MatMul block-wise 8-bit.
    "fused attention, block-wise 8-bit": {"fused": True, "block_bits": 8, "block_size": 128},
    # static: activations' ranges calibrated once on dev windows (QDQ), not measured at run time
    "static, per-channel, reduce_range": {"static": True, "reduce_range": True},
}


def quantize_static_int8(source: Path, path: Path, calibration: list[dict] | None, reduce_range: bool = False) -> Path:
    """QDQ int8 with activation ranges from MinMax calibration over the given batches."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("static quantisation needs calibration batches")
    names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.left = iter([{name: batch[name] for name in names} for batch in calibration])

        def get_next(self):
            return next(self.left, None)

    return atomic_write(path, lambda partial: quantize_static(
        source, partial, Batches(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]))


def _graph_and_weights(path: Path | str):
    """The graph of an ONNX file (without its weights' data) and the names of its constant tensors
    (initializers and Constant outputs): what tells a weight MatMul from an attention product."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return graph, {init.name for init in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def activation_matmuls(path: Path | str) -> list[str]:
    """MatMul nodes with no weight among their inputs (attention's Q·Kᵀ and scores·V)."""
    graph, weights = _graph_and_weights(path)
    return [node.name for node in graph.node if node.op_type == "MatMul" and not set(node.input) & weights]


def matmul_roles(path: Path | str) -> dict[str, str]:
    """Each weight MatMul's part in its layer, read from the graph: `ffn_in` (its output reaches a
    Gelu), `ffn_out` (its input comes from one), `value` (its output is the second input of the
    MatMul that weighs by the softmax), else `other` (query, key, attention output)."""
    graph, weights = _graph_and_weights(path)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def comes_from(name: str, op: str) -> bool:  # through shape and arithmetic ops, not through a MatMul
        node = producer.get(name)
        while node is not None and node.op_type not in ("MatMul", "Gemm"):
            if node.op_type == op:
                return True
            node = producer.get(node.input[0]) if node.input else None
        return False

    def reaches(name: str):  # the first Gelu or MatMul downstream, with the tensor that enters it
        frontier = [name]
        while frontier:
            tensor = frontier.pop()
            for node in consumers.get(tensor, []):
                if node.op_type in ("Gelu", "MatMul"):
                    yield node, tensor
                else:
                    frontier.extend(node.output)

    roles = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        ahead = list(reaches(node.output[0]))
        if comes_from(node.input[0], "Gelu"):
            roles[node.name] = "ffn_out"
        elif any(n.op_type == "Gelu" for n, _ in ahead):
            roles[node.name] = "ffn_in"
        elif any(n.op_type == "MatMul" and n.input[1] == t and comes_from(n.input[0], "Softmax") for n, t in ahead):
            roles[node.name] = "value"
        else:
            roles[node.name] = "other"
    return roles


def quantize_dynamic_int8(source: Path, path: Path, exclude: list[str] | tuple = (), reduce_range: bool = False) -> Path:
    """Dynamic int8 (activations quantised at run time), per channel, MatMuls only, but `exclude`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return atomic_write(path, lambda partial: quantize_dynamic(
        source, partial, weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
        op_types_to_quantize=["MatMul"], nodes_to_exclude=list(exclude)))


def quantize_blockwise(source: Path, path: Path, block_bits: int, block_size: int) -> Path:
    """Weight MatMuls as MatMulNBits: `block_bits`-bit symmetric weights in blocks of `block_size`
    input rows, with int8 products (accuracy level 4); the attention products stay fp32."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=block_bits, block_size=block_size, is_symmetric=True,
                                     accuracy_level=4, nodes_to_exclude=activation_matmuls(source), op_types_to_quantize=("MatMul",))
    quantizer.process()
    return atomic_write(path, lambda partial: quantizer.model.save_model_to_file(str(partial), use_external_data_format=False))


def quantize_int8(source: Path, path: Path, variant: str = "per-channel", calibration: list[dict] | None = None,
                  fused: Callable[[], Path] | None = None) -> Path:
    """Int8 weights for the MatMuls, per channel, with the options of `variant` (INT8_VARIANTS):
    dynamic (activations quantised at run time), or static (their ranges calibrated on
    `calibration`, padded batches of windows as the predictor feeds the model). A variant of the
    fused graph is quantised from `fused()`, which makes that graph (export_fused_fp32)."""
    options = dict(INT8_VARIANTS[variant])
    if options.pop("fused", False):
        if fused is None:
            raise ValueError(f"{variant!r} is quantised from the fused graph: no way to make it was given")
        source = fused()
    if options.pop("static", False):
        return quantize_static_int8(source, path, calibration, **options)
    if "block_bits" in options:
        return quantize_blockwise(source, path, **options)
    fp32_roles = options.pop("fp32_roles", ())
    exclude = [name for name, role in matmul_roles(source).items() if role in fp32_roles] if fp32_roles else []
    return quantize_dynamic_int8(source, path, exclude, **options)
