#!/usr/bin/python3
"""Checks ONNX files that cnn.h wrote against the ONNX specification with
the reference checker, onnx.checker.check_model(full_check=True), which also
runs strict shape inference. Needs Debian's python3-onnx:

    /usr/bin/python3 tests/onnx/checker.py FILE.onnx...

Prints "FILE: onnx.checker passed (IR n, opset m)" for each good file.
Exits 0 when all pass, 1 when any fails (with the checker's message),
2 on a usage error, 77 (the "skipped" code of automake and meson) when
python3-onnx is not installed.
"""
import sys


def main(paths):
    if not paths:
        print("usage: /usr/bin/python3 tests/onnx/checker.py FILE.onnx...", file=sys.stderr)
        return 2
    try:
        import onnx
        import onnx.checker
    except ImportError as e:
        print(f"checker.py: python3-onnx not installed ({e})", file=sys.stderr)
        return 77
    status = 0
    for path in paths:
        step = "cannot read it"
        try:
            model = onnx.load(path)
            step = "onnx.checker failed"
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:  # OSError, protobuf's DecodeError, ValidationError, InferenceError...
            message = str(e).strip() or type(e).__name__
            print(f"{path}: FAIL (onnx {onnx.__version__}) {step}: {message}")
            status = 1
            continue
        opsets = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        opset = opsets[0] if opsets else "none"
        print(f"{path}: onnx.checker passed (IR {model.ir_version}, opset {opset})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
