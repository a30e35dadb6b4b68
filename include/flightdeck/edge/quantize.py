"""ONNX int8 by dynamic quantisation (onnxruntime.quantization.quantize_dynamic), reported honestly.

Dynamic quantisation rewrites MatMul / Gemm (and Conv) weights to int8. A logistic-regression
champion is an ONNX-ML `LinearClassifier` node with no MatMul, and skl2onnx converts the
pipeline in double precision (flightdeck's inputs are doubles for exact parity): both the
logistic regression and the MLP become float64 MatMuls, which quantize_dynamic leaves alone
(it quantises float32 weights only). Measured: it quantises 0 nodes of either model.

The route that can be quantised: `float32_matmuls` rewrites each float64 MatMul with a
constant weight as Cast(float32) → MatMul(float32 weight) → Cast(float64); quantize_dynamic
then turns those into int8 MatMulInteger. Everything else (scaling, one-hot, sigmoid) stays
as it was. The result counts the nodes actually quantised; when there are none the table
says "nothing to quantise" instead of presenting a copy of the float model as int8.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

QUANTISED_OPS = {"MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul",
                 "ConvInteger", "QLinearConv", "QGemm"}
QUANTISABLE_OPS = {"MatMul", "Gemm", "Conv"}


@dataclass(frozen=True)
class QuantisedOnnx:
    """The int8 model (None when nothing could be quantised) and what was quantised."""

    model: bytes | None
    quantised_nodes: int
    quantisable_nodes: int
    float_ops: tuple[str, ...]
    note: str


def float32_matmuls(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy whose float64 MatMuls with constant weights compute in float32 (casts around them)."""
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    weights = {init.name: init for init in graph.initializer if init.data_type == onnx.TensorProto.DOUBLE}
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        rewritten += 1
        data, weight = node.input[0], node.input[1]
        weight32 = f"{weight}_f32"
        graph.initializer.append(numpy_helper.from_array(
            numpy_helper.to_array(weights[weight]).astype("float32"), weight32))
        nodes += [helper.make_node("Cast", [data], [f"{data}_f32_{rewritten}"], to=onnx.TensorProto.FLOAT),
                  helper.make_node("MatMul", [f"{data}_f32_{rewritten}", weight32], [f"{node.output[0]}_f32"],
                                   name=f"{node.name or 'matmul'}_f32_{rewritten}"),
                  helper.make_node("Cast", [f"{node.output[0]}_f32"], [node.output[0]], to=onnx.TensorProto.DOUBLE)]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model, rewritten


def quantise_dynamic_int8(model_bytes: bytes) -> QuantisedOnnx:
    """Quantise the float32-MatMul form of the model (int8 weights) and count what was quantised."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, _ = float32_matmuls(onnx.load_from_string(model_bytes))
    model_bytes = source.SerializeToString()
    ops = tuple(sorted({node.op_type for node in source.graph.node}))
    float_weights = {init.name for init in source.graph.initializer
                     if init.data_type == onnx.TensorProto.FLOAT}
    quantisable = sum(1 for node in source.graph.node if node.op_type in QUANTISABLE_OPS
                      and any(name in float_weights for name in node.input))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        out = dst.read_bytes()
    quantised = sum(1 for node in onnx.load_from_string(out).graph.node if node.op_type in QUANTISED_OPS)
    if quantised:
        return QuantisedOnnx(out, quantised, quantisable, ops, f"{quantised} of {quantisable} MatMul(s) quantised to int8 (float64 MatMuls computed in float32 first)")
    matmuls = [op for op in ops if op in QUANTISABLE_OPS]
    reason = ("its MatMul/Gemm weights are not constant float tensors"
              if matmuls else f"the graph has no MatMul/Gemm/Conv (ops: {', '.join(ops)})")
    return QuantisedOnnx(None, 0, quantisable, ops, f"nothing to quantise: {reason}")
