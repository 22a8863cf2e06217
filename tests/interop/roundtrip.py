#!/usr/bin/python3
"""roundtrip.py - the PyTorch side of `make interop`: the three seed models
(lenet5, mlp, cnn) cross between PyTorch and cnn.h through safetensors files,
both ways, and each side checks the other's outputs.

    roundtrip.py torch-to-c DIR   for each model NAME, writes DIR/NAME.safetensors
                                  (initialised in PyTorch, seeded, as gen.py's
                                  fixtures are, saved by cnnh.save) and DIR/NAME.io
                                  (a batch of 4 inputs in [0, 1) and PyTorch's
                                  outputs, eval mode)
    roundtrip.py c-to-torch DIR   for each model NAME, reads DIR/NAME.safetensors
                                  and DIR/NAME.io written by cnn.h (its outputs for
                                  that input), builds the model with cnnh.load,
                                  runs the input, prints NAME: max |difference| = X,
                                  and exits 1 if any X exceeds 1e-5

The .io format is in tests/interop/README.md. Run it with Debian's
/usr/bin/python3 and python3-torch.
"""
import os
import re
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "pytorch"))
import cnnh  # noqa: E402
from gen import condition, forward, init_weights, mistakes, read_io, write_io  # noqa: E402  (once, there)

BATCH = 4
TOLERANCE = 1e-5   # most |PyTorch - cnn.h| an output (a probability) may differ by
CLASSES = 47       # EMNIST balanced, as examples/seed.h
INPUT = (1, 28, 28)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def lenet5():
    """cnn_add_lenet5 with 47 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),       # (6, 14, 14)
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),                 # (16, 5, 5)
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, CLASSES), nn.Softmax(dim=1))


def mlp():
    """seed_add_mlp in examples/seed_models.h."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, CLASSES), nn.Softmax(dim=1))


def cnn():
    """seed_add_cnn in examples/seed_models.h: two blocks of [conv 3x3 same,
    LeakyReLU 0.3, conv 3x3 same, LeakyReLU 0.3, max-pool 2, dropout 0.25]
    with 32 then 64 filters, then dense 256, ReLU, dense 128, ReLU, dense 47,
    softmax."""
    layers = []
    for cin, filters in ((1, 32), (32, 64)):                                # (32, 14, 14), (64, 7, 7)
        layers += [nn.Conv2d(cin, filters, 3, 1, 1), nn.LeakyReLU(0.3),
                   nn.Conv2d(filters, filters, 3, 1, 1), nn.LeakyReLU(0.3),
                   nn.MaxPool2d(2, 2), nn.Dropout(0.25)]
    layers += [nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
               nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, CLASSES), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


MODELS = {"lenet5": lenet5, "mlp": mlp, "cnn": cnn}


def torch_to_c(folder):
    os.makedirs(folder, exist_ok=True)
    for seed, (name, make) in enumerate(MODELS.items(), start=1):
        torch.manual_seed(seed)
        model = make().eval()
        init_weights(model)  # not PyTorch's default, whose outputs are all near 1/47
        x = torch.rand((BATCH,) + INPUT)
        y = forward(model, x)
        condition(name, model, x, y)   # float32 within 1e-6 of float64, or stop
        mistakes(name, model, x, y)    # flipped kernels or transposed weights would show, or stop
        model_path, io_path = os.path.join(folder, name + ".safetensors"), os.path.join(folder, name + ".io")
        cnnh.save(model, model_path, INPUT)
        write_io(io_path, x, y)
        if not torch.equal(forward(cnnh.load(model_path), x), y):   # what cnn.h will read
            sys.exit("%s: %s read back gives other outputs" % (name, model_path))
        parameters = sum(p.numel() for p in model.parameters())
        print("%s: wrote %s (%d layers, %d parameters, F32) and %s (%d inputs %s, %d outputs each)"
              % (name, model_path, len(model), parameters, io_path, BATCH, "x".join(map(str, INPUT)), y.shape[1]))
    return 0


def c_to_torch(folder):
    failed = 0
    for name in MODELS:
        model_path, io_path = os.path.join(folder, name + ".safetensors"), os.path.join(folder, name + ".io")
        try:
            model = cnnh.load(model_path)
            x, expected = read_io(io_path)
        except (OSError, ValueError) as e:
            print("%s: cannot read what cnn.h wrote: %s" % (name, e))
            failed += 1
            continue
        wrong = architecture_difference(model, MODELS[name]())
        if wrong:
            print("%s: %s is not the model PyTorch has under that name: %s" % (name, model_path, wrong))
            failed += 1
            continue
        if tuple(x.shape[1:]) != model.cnnh_input_shape:
            print("%s: %s holds inputs of shape %s, but the model takes %s"
                  % (name, io_path, tuple(x.shape[1:]), model.cnnh_input_shape))
            failed += 1
            continue
        got = forward(model, x)
        if got.shape != expected.shape:
            print("%s: the model gives %d outputs per sample, %s holds %d"
                  % (name, got.shape[1], io_path, expected.shape[1]))
            failed += 1
            continue
        difference = float((got - expected).abs().max())   # NaN if either side has one
        verdict = "ok" if difference <= TOLERANCE else "FAILED (tolerance %g)" % TOLERANCE
        print("%s: max |difference| = %.3g over %d samples x %d outputs: %s"
              % (name, difference, x.shape[0], expected.shape[1], verdict))
        if not difference <= TOLERANCE:
            failed += 1
    return 1 if failed else 0


def architecture_difference(got, want):
    """Where the layers of got and want differ (their cnn.h descriptions,
    initialisers aside), or None."""
    def layers(model):
        text = cnnh.describe(model, INPUT)
        return [re.sub(r" init=\S+", "", text["cnn.h.layer.%d" % i]) for i in range(len(model))]
    if got.cnnh_input_shape != INPUT:
        return "its input is %s, not %s" % (got.cnnh_input_shape, INPUT)
    a, b = layers(got), layers(want)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return "its layer %d is %r, not %r" % (i, x, y)
    if len(a) != len(b):
        return "it has %d layers, not %d" % (len(a), len(b))
    return None


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("torch-to-c", "c-to-torch"):
        sys.exit(__doc__)
    return (torch_to_c if sys.argv[1] == "torch-to-c" else c_to_torch)(sys.argv[2])


if __name__ == "__main__":
    sys.exit(main())
