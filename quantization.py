"""int8 versions of a student's ONNX model for ONNX Runtime: dynamic quantisation (weights int8, each batch's
activations quantised with that batch's own ranges at run time) and static quantisation (activation ranges fixed
beforehand from calibration text). Used by export_model.py (--int8) and the benchmark."""
import os

import numpy as np

import data
from model import STUDENT_INPUTS
from utils import UserError

# ONNX Runtime's static quantiser has no LSTM (its static operator tables hold Gather, Gemm, MatMul and the like,
# not LSTM): these are what it quantises statically, and the LSTM is left to dynamic quantisation. The embedding
# table (Gather) too: quantised statically, it is dequantised whole before the lookup at every run (82-87% of a
# batch-1 run's time, by the benchmark's profile), where dynamically only the rows looked up are.
STATIC_OPS = ("Gemm", "MatMul")
DYNAMIC_AFTER_STATIC = ("LSTM", "Gather")
CALIBRATION_EXAMPLES = 1000  # the first lines of a calibration file used
CALIBRATION_BATCH = 32


def quantize_dynamic(path, int8_path, op_types=None):
    """Dynamic int8 quantisation of an ONNX model (weights int8, activations quantised per batch at run time); only
    the nodes of op_types when given."""
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_dynamic

    ort_dynamic(path, int8_path, weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types or []))
    return int8_path


def quantize_static(path, int8_path, batches, lstm="dynamic"):
    """Static int8 quantisation in QDQ format: the dense layers (Gemm) int8 per channel, their inputs quantised with
    fixed ranges, the min and max ONNX Runtime saw over `batches` (collated student batches of calibration text).
    The LSTM, which the static quantiser cannot quantise, and the embedding table are quantised dynamically (lstm
    "dynamic": the fastest model for ONNX Runtime) or left in fp32 (lstm "fp32": a plain QDQ model, which other
    runtimes such as OpenVINO read; ONNX Runtime's DynamicQuantizeLSTM is its own operator)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{name: batch[name] for name in STUDENT_INPUTS if name in batch}
                                  for batch in batches])

        def get_next(self):
            return next(self._batches, None)

    static_path = int8_path + ".static" if lstm == "dynamic" else int8_path
    try:
        ort_static(path, static_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                   op_types_to_quantize=list(STATIC_OPS), activation_type=QuantType.QInt8,
                   weight_type=QuantType.QInt8)
        if lstm == "dynamic":
            quantize_dynamic(static_path, int8_path, DYNAMIC_AFTER_STATIC)
    finally:
        if lstm == "dynamic" and os.path.exists(static_path):
            os.remove(static_path)
    return int8_path


def calibration_batches(examples, analyzer, vocab, max_seq_length):
    """Collated student batches of the examples (calibration text), batched by length as predict.py batches."""
    if not examples:
        raise UserError("static int8 quantisation: no calibration examples")
    records = [data.student_record(analyzer.sentences(example.texts), vocab, max_seq_length) for example in examples]
    collate = data.student_collate(vocab.pad_id)
    return [collate([records[i] for i in indices]) for indices in data.BucketBatchSampler(
        [data.record_length(record) for record in records], CALIBRATION_BATCH, shuffle=False)]


def same_class_share(run, other, batches):
    """The share of the batches' examples to which run and other (run(batch) -> logits) give the same class."""
    same = [run(batch).argmax(-1) == other(batch).argmax(-1) for batch in batches]
    return float(np.concatenate(same).mean())
