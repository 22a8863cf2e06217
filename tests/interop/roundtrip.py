#!/usr/bin/python3
"""roundtrip.py - the PyTorch side of `make interop`: the seed models (lenet5,
mlp, cnn, cnn_bn with batch norm, resnet with residual blocks) cross between
PyTorch and cnn.h through safetensors files, both ways, and each side checks
the other's outputs.

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


def cnn(batch_norm=False):
    """seed_add_cnn in examples/seed_models.h: two blocks of [conv 3x3 same,
    LeakyReLU 0.3, conv 3x3 same, LeakyReLU 0.3, max-pool 2, dropout 0.25]
    with 32 then 64 filters, then dense 256, ReLU, dense 128, ReLU, dense 47,
    softmax; with batch_norm (seed_add_cnn_batch_norm), a BatchNorm2d after
    each conv."""
    layers = []
    for cin, filters in ((1, 32), (32, 64)):                                # (32, 14, 14), (64, 7, 7)
        for conv_in in (cin, filters):
            layers += [nn.Conv2d(conv_in, filters, 3, 1, 1)]
            layers += [nn.BatchNorm2d(filters)] if batch_norm else []
            layers += [nn.LeakyReLU(0.3)]
        layers += [nn.MaxPool2d(2, 2), nn.Dropout(0.25)]
    layers += [nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
               nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, CLASSES), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


def resnet():
    """seed_add_resnet: a stem (conv 3x3 32, batch norm, ReLU, max-pool 3x3
    stride 2 padding 1), three stages of two basic blocks of 32, 64 and 128
    filters (the first of stages 2 and 3 with stride 2 and a 1x1 projection),
    global average pooling, dense 47 straight on its (128, 1, 1), softmax."""
    def conv3x3(cin, filters, stride):
        return nn.Conv2d(cin, filters, 3, stride, 1)

    layers = [conv3x3(1, 32, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]   # (32, 14, 14)
    cin = 32
    for stage, filters in enumerate((32, 64, 128)):                           # 14x14, 7x7, 4x4
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            body = nn.Sequential(conv3x3(cin, filters, stride), nn.BatchNorm2d(filters), nn.ReLU(),
                                 conv3x3(filters, filters, 1), nn.BatchNorm2d(filters))
            shortcut = nn.Conv2d(cin, filters, 1, stride) if stride != 1 or cin != filters else None
            layers += [cnnh.Residual(body, shortcut), nn.ReLU()]
            cin = filters
    layers += [nn.AdaptiveAvgPool2d(1), cnnh.FlattenLinear(128, CLASSES), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


MODELS = {"lenet5": lenet5, "mlp": mlp, "cnn": cnn, "cnn_bn": lambda: cnn(batch_norm=True), "resnet": resnet}
GAINS = {"resnet": 0.8}   # init_weights' gain, where 1 makes float32 stray from float64 by more than 1e-6


def torch_to_c(folder):
    os.makedirs(folder, exist_ok=True)
    for seed, (name, make) in enumerate(MODELS.items(), start=1):
        torch.manual_seed(seed)
        model = make().eval()
        init_weights(model, GAINS.get(name, 1.0))  # not PyTorch's default, whose outputs are all near 1/47
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
        print("%s: wrote %s (%s layers, %d parameters, F32) and %s (%d inputs %s, %d outputs each)"
              % (name, model_path, cnnh.describe(model, INPUT)["cnn.h.layers"], parameters, io_path, BATCH,
                 "x".join(map(str, INPUT)), y.shape[1]))
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
        return [re.sub(r" init=\S+", "", text["cnn.h.layer.%d" % i]) for i in range(int(text["cnn.h.layers"]))]
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
