"""Runs an ONNX model exported by `ferronet export --format onnx` in onnxruntime (CPU) and compares
its logits with ferronet's. Used by tests/cli/onnx_cli.rs; needs `pip install onnxruntime`.

    python3 tests/onnx_check.py MODEL.onnx INPUT.f32 LOGITS.f32 N,C,H,W TOLERANCE

INPUT.f32 and LOGITS.f32 hold little-endian float32 values: the normalised [N, C, H, W] batch and
ferronet's [N, classes] logits for it. The model runs on the whole batch and on its first image
alone (the batch dimension is dynamic). Prints one JSON line; exits 1 when a logit differs by more
than TOLERANCE or the model's interface is not the documented one.
"""
import json
import sys

import numpy as np
import onnxruntime


def main():
    model, input_path, logits_path, shape, tolerance = sys.argv[1:]
    shape = [int(d) for d in shape.split(",")]
    x = np.fromfile(input_path, dtype="<f4").reshape(shape)
    want = np.fromfile(logits_path, dtype="<f4").reshape(shape[0], -1)
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    problems = []
    if [i.name for i in inputs] != ["input"] or [o.name for o in outputs] != ["logits"]:
        problems.append(f"inputs {[i.name for i in inputs]}, outputs {[o.name for o in outputs]}")
    if inputs[0].shape != ["batch"] + shape[1:]:
        problems.append(f"input shape {inputs[0].shape}")
    meta = session.get_modelmeta().custom_metadata_map
    for key in ["mean", "std", "normalization", "class_names"]:
        if key not in meta:
            problems.append(f"no metadata {key}")
    got = session.run(["logits"], {"input": x})[0]
    single = session.run(["logits"], {"input": x[:1]})[0]
    diff = float(max(np.abs(got - want).max(), np.abs(single - want[:1]).max()))
    if not diff <= float(tolerance):
        problems.append(f"logits differ by {diff}")
    print(json.dumps({"model": model, "max_abs_diff": diff, "onnxruntime": onnxruntime.__version__, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
