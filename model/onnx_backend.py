"""The ONNX Runtime backend: the trained encoder + head exported to ONNX (fp32) and a dynamically
quantised int8 copy, served through the same windows, batches and cache as the torch model.

Export is `torch.onnx.export(dynamo=True)` with the batch and sequence axes dynamic: the older
TorchScript tracer bakes the attention-mask code in as constants and disagrees with torch on 2–4%
of labels (measured, ../shared/ONNX.md). A second fp32 file holds ONNX Runtime's fused BERT
operators (export_fused_fp32). Int8 is per channel, with some parts left fp32 and, on the fused
graph, the activations smoothed first (INT8_VARIANTS): the defaults miss the 0.995 label-agreement
bar. Whether a file may be used is decided by the parity check at export (training/export.py) and
the backend choice (model/backends.py).
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
INT8 = "onnx-int8"
ONNX_FILES = {"onnx": "model.onnx", "onnx-fused": "model.fused.onnx", INT8: "model.int8.onnx"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # those of them the tokenizer gives


def open_session(path: Path | str | bytes, threads: int | None = None):
    """A session on an ONNX file (or a serialised model's bytes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
    options.inter_op_num_threads = 1  # one graph at a time: the parallelism is inside each op
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"])


class OnnxPredictor(WindowedPredictor):
    """The windowed predictor with an ONNX Runtime session for the forward pass.

    An int8 graph quantises its activations at run time by the range of the whole input tensor, so
    a window's scores would move with the other windows of its batch (up to 0.06 on the real
    paragraphs, 4 labels of 324 alone; docs/performance.md): the same paragraph would get another
    answer alone, inside a report, or beside another user's request. So int8 computes each window in
    a batch of its own (`rows_apart`, the default for it; INT8_ROWS_APART=false batches it as the
    others are, about 8 % faster at 32 paragraphs a call). fp32 graphs move by rounding only."""

    def __init__(self, session, tokenizer, meta: dict, max_length: int, stride: int, prefix: str, backend: str,
                 max_batch_tokens: int, cache_size: int = 0, rows_apart: bool = True):
        super().__init__(tokenizer, meta, max_length, stride, prefix, max_batch_tokens, cache_size)
        self.session, self.backend = session, backend
        self.rows_apart = rows_apart and backend == INT8  # fp32 needs no such care
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def load(cls, model_dir: Path | str, backend: str = "onnx", threads: int | None = None,
             max_batch_tokens: int = 4096, cache_size: int = 0, meta: dict | None = None,
             rows_apart: bool = True) -> "OnnxPredictor":
        from transformers import AutoTokenizer

        path = Path(model_dir) / ONNX_FILES[backend]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        meta = meta or read_meta(model_dir)
        max_length, stride, prefix = read_window_config(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(open_session(path, threads), tokenizer, meta, max_length, stride, prefix, backend, max_batch_tokens,
                   cache_size, rows_apart)

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
    if not any(o.domain == "com.microsoft" for o in fused.model.opset_import):  # the quantiser's shape inference needs it
        fused.model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return atomic_write(path, lambda partial: onnx.save(fused.model, str(partial)))


# Int8 variants tried at export, each checked for parity (training/export.py); the fastest that passes
# is kept. This CPU (AVX2, no VNNI) can saturate the default U8S8 products; ONNX Runtime's guide
# suggests reduce_range or U8U8. The embeddings (Gather) and the classifier (Gemm) stay fp32 in all.
# Taken off the list, their figures in docs/performance.md: U8U8 (the slowest, 0.975 agreement),
# reduce_range on the weight MatMuls only (reduce_range's labels exactly), the FFN output alone or
# with the values fp32 (failed), and the block-wise 8-bit ones (MatMulNBits: no faster than fp32).
EVERY_LAYER, BOTTOM_HALF = (0.0, 1.0), (0.0, 0.5)  # shares of the layers, from the bottom
INT8_VARIANTS = {
    "per-channel": {},
    "per-channel, reduce_range": {"reduce_range": True},
    # Mixed precision: the MatMuls whose int8 error moves labels most stay fp32. Measured on real
    # paragraphs one role at a time (make bench-int8): the FFN's output projection (its input, the
    # GELU's output, has the widest range) did most of the harm, then the values and the FFN's input.
    "per-channel, FFN and values in fp32": {"fp32": {"ffn_out": EVERY_LAYER, "value": EVERY_LAYER, "ffn_in": EVERY_LAYER}},
    # On ONNX Runtime's fused BERT graph (export_fused_fp32), the attention too (QAttention), with the
    # activations smoothed first (smooth_activations, SmoothQuant): a few channels of each layer's
    # input are tens of times wider than the rest, and one int8 scale per tensor then leaves the rest
    # a handful of steps. alpha 0.75 and the parts left fp32 were chosen by make bench-int8-fused
    # (docs/performance.md): the attention operator and the bottom half's FFN output keep the labels
    # in both modes.
    "fused, smoothed, every MatMul and the attention": {"fused": True, "smooth": 0.75},
    "fused, smoothed, FFN output of the bottom half in fp32": {"fused": True, "smooth": 0.75, "fp32": {"ffn_out": BOTTOM_HALF}},
    "fused, smoothed, attention and the bottom half's FFN output in fp32": {
        "fused": True, "smooth": 0.75, "fp32": {"attention": EVERY_LAYER, "ffn_out": BOTTOM_HALF}},
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


GELUS = ("Gelu", "BiasGelu", "FastGelu")  # the plain export's, and ONNX Runtime's fused ones


def matmul_roles(path: Path | str) -> dict[str, str]:
    """Each weight MatMul's part in its layer, read from the graph, in the graph's order: `ffn_in`
    (its output reaches a GELU), `ffn_out` (its input comes from one), `value` (its output is the
    second input of the MatMul that weighs by the softmax), else `other` (query, key, attention
    output); and in the fused graph each `Attention` operator (query, key and value in one)."""
    graph, weights = _graph_and_weights(path)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def comes_from(name: str, ops: tuple[str, ...]) -> bool:  # through shape and arithmetic ops, not through a MatMul
        node = producer.get(name)
        while node is not None and node.op_type not in ("MatMul", "Gemm", "Attention"):
            if node.op_type in ops:
                return True
            node = producer.get(node.input[0]) if node.input else None
        return False

    def reaches(name: str):  # the first Gelu or MatMul downstream, with the tensor that enters it
        frontier = [name]
        while frontier:
            tensor = frontier.pop()
            for node in consumers.get(tensor, []):
                if node.op_type in (*GELUS, "MatMul"):
                    yield node, tensor
                else:
                    frontier.extend(node.output)

    roles = {}
    for node in graph.node:
        if node.op_type == "Attention":
            roles[node.name] = "attention"
            continue
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        ahead = list(reaches(node.output[0]))
        if comes_from(node.input[0], GELUS):
            roles[node.name] = "ffn_out"
        elif any(n.op_type in GELUS for n, _ in ahead):
            roles[node.name] = "ffn_in"
        elif any(n.op_type == "MatMul" and n.input[1] == t and comes_from(n.input[0], ("Softmax",)) for n, t in ahead):
            roles[node.name] = "value"
        else:
            roles[node.name] = "other"
    return roles


def role_layers(roles: dict[str, str]) -> dict[str, int]:
    """The layer (0 at the bottom) of each node of `matmul_roles`: a layer ends with its FFN output."""
    layers, layer = {}, 0
    for name, role in roles.items():
        layers[name] = layer
        layer += role == "ffn_out"
    return layers


def _weight_nodes(graph, weights) -> list:
    """The MatMuls and Attention operators with a weight (a stored tensor) as their second input."""
    return [node for node in graph.node if node.op_type in ("MatMul", "Attention") and len(node.input) > 1 and node.input[1] in weights]


def input_ranges(source: Path, calibration: list[dict]) -> dict[str, np.ndarray]:
    """max|x| per channel of each weight node's input (_weight_nodes), over `calibration` (padded
    batches of windows, as the predictor feeds the model): what smooth_activations scales by."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    weights = {init.name for init in model.graph.initializer}
    inputs = sorted({node.input[0] for node in _weight_nodes(model.graph, weights)})
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs)
    session = open_session(model.SerializeToString())  # the same graph with each of those inputs as an output
    feeds = [i.name for i in session.get_inputs()]
    widest: dict[str, np.ndarray] = {}
    for batch in calibration:
        for name, value in zip(inputs, session.run(inputs, {name: batch[name] for name in feeds})):
            widest[name] = np.maximum(widest.get(name, 0.0), np.abs(value).reshape(-1, value.shape[-1]).max(axis=0))
    return widest


def smooth_activations(source: Path, path: Path, ranges: dict[str, np.ndarray], alpha: float,
                       skip: set[str] | frozenset = frozenset()) -> Path:
    """SmoothQuant (Xiao et al., 2023): each weight MatMul's (and Attention's) input channel j is
    divided by s_j = max|X_j|^alpha / max|W_j|^(1-alpha) and the weight's row j multiplied by it, so
    the product is unchanged while the outlier channels that set a dynamic int8 scale shrink and the
    weights take up the range. The division is a Mul on the node's own input (the same tensor also
    feeds the residual sum, so it cannot be folded into the layer norm). max|X_j|: `ranges`
    (input_ranges of `source`). `skip`: nodes left as they are."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    targets = [node for node in _weight_nodes(graph, weights) if node.name not in skip]
    nodes = []
    for node in graph.node:
        if node in targets:
            weight = numpy_helper.to_array(weights[node.input[1]])
            scale = np.maximum(ranges[node.input[0]], 1e-5) ** alpha / np.maximum(np.abs(weight).max(axis=1), 1e-5) ** (1 - alpha)
            scale = np.clip(scale, 1e-3, 1e3).astype(np.float32)  # a dead channel must not blow up its row
            weights[node.input[1]].CopyFrom(numpy_helper.from_array((weight * scale[:, None]).astype(np.float32), node.input[1]))
            graph.initializer.append(numpy_helper.from_array(1 / scale, f"{node.name}/smooth_scale"))
            smoothed = f"{node.name}/smoothed_input"
            nodes.append(helper.make_node("Mul", [node.input[0], f"{node.name}/smooth_scale"], [smoothed], name=f"{node.name}/smooth"))
            node.input[0] = smoothed
        nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    return atomic_write(path, lambda partial: onnx.save(model, str(partial)))


def quantize_dynamic_int8(source: Path, path: Path, exclude: list[str] | tuple = (), reduce_range: bool = False) -> Path:
    """Dynamic int8 (activations quantised at run time), per channel, MatMuls (and the fused graph's
    Attention operators) but `exclude`."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser turns every Gemm into a MatMul named <Gemm>_MatMul before it quantises: the
    # classifier is one, and stays fp32. DefaultTensorType: the shape inference cannot type the
    # outputs of ONNX Runtime's own operators.
    graph, _ = _graph_and_weights(source)
    classifier = [f"{node.name}_MatMul" for node in graph.node if node.op_type == "Gemm"]
    return atomic_write(path, lambda partial: quantize_dynamic(
        source, partial, weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
        op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=list(exclude) + classifier,
        extra_options={"DefaultTensorType": TensorProto.FLOAT}))


def quantize_int8(source: Path, path: Path, variant: str = "per-channel", calibration: list[dict] | None = None,
                  fused: Callable[[], Path] | None = None, ranges: dict[str, dict] | None = None) -> Path:
    """Int8 weights for the MatMuls, per channel, with the options of `variant` (INT8_VARIANTS):
    dynamic (activations quantised at run time), or static (their ranges calibrated on
    `calibration`, padded batches of windows as the predictor feeds the model). A variant of the
    fused graph is quantised from `fused()`, which makes that graph (export_fused_fp32); a smoothed
    one measures its activations on `calibration` too, once per source file when the variants of
    one export share a `ranges` dict."""
    options = dict(INT8_VARIANTS[variant])
    if options.pop("fused", False):
        if fused is None:
            raise ValueError(f"{variant!r} is quantised from the fused graph: no way to make it was given")
        source = fused()
    if options.pop("static", False):
        return quantize_static_int8(source, path, calibration, **options)
    exclude = fp32_nodes(matmul_roles(source), options.pop("fp32", {}))
    alpha = options.pop("smooth", None)
    if alpha is None:
        return quantize_dynamic_int8(source, path, exclude, **options)
    if not calibration:
        raise ValueError(f"{variant!r} smooths the activations: it needs calibration batches")
    ranges = {} if ranges is None else ranges
    if str(source) not in ranges:
        ranges[str(source)] = input_ranges(source, calibration)
    smoothed = smooth_activations(source, path.with_name(path.name + ".smoothed"), ranges[str(source)], alpha, skip=set(exclude))
    try:
        return quantize_dynamic_int8(smoothed, path, exclude, **options)
    finally:
        smoothed.unlink(missing_ok=True)


def fp32_nodes(roles: dict[str, str], parts: dict[str, tuple[float, float]]) -> list[str]:
    """The nodes of `roles` (matmul_roles) to leave fp32: for each role in `parts`, those in its
    share of the layers ((0.0, 0.5): the bottom half)."""
    layers = role_layers(roles)
    count = max(layers.values(), default=-1) + 1
    return [name for name, role in roles.items()
            if role in parts and parts[role][0] * count <= layers[name] < parts[role][1] * count]
