#!/usr/bin/python3
"""Writes the safetensors fixtures with which the C tests check that cnn.h
reads PyTorch's models and computes what PyTorch computes. Run it with
Debian's python3-torch:

    /usr/bin/python3 tests/interop/gen.py

For each case NAME it writes tests/interop/fixtures/NAME.safetensors (the
model, through examples/pytorch/cnnh.py) and NAME.io (an input batch and
PyTorch's outputs for it, float32, eval mode). The cases, the .io format and
what the C side does with them are in tests/interop/README.md.

Before a case is written it is checked: read back with cnnh.load (or, for
the file without metadata, into the hand-built model), it must give the same
outputs; computed again in float64 from the same float32 weights and inputs,
the outputs must differ by at most 1e-6 (else the case is badly conditioned
and the C test could pass or fail by rounding luck); and the usual layout
mistakes of a reader (convolving with flipped kernels, reading a dense
weight as (IN, OUT), swapping or ignoring batch norm's running statistics)
must change the outputs far beyond that.

Deterministic: fixed seeds, one thread, deterministic algorithms; a second
run writes the same bytes on the same machine.
"""
import copy
import os
import struct
import sys
import tempfile
import zlib

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "pytorch"))
import cnnh  # noqa: E402

FIXTURES = os.path.join(HERE, "fixtures")
IO_MAGIC = b"CNNIO1\n\0"
BATCH = 3
CONDITION_LIMIT = 1e-6   # most |float32 - float64| an output may show
MISTAKE_MARGIN = 1e-2    # least change a layout mistake must make (the C tests allow ~1e-5)
SIZE_LIMIT = 150_000     # all fixtures together, in bytes

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------- .io files

def write_io(path, x, y):
    """x (N, C, H, W) and y (N, outputs), as float32: the .io format of
    tests/interop/README.md. Written under a temporary name, then renamed."""
    n, c, h, w = x.shape
    y = y.reshape(n, -1)
    data = (IO_MAGIC + struct.pack("<5I", n, c, h, w, y.shape[1])
            + x.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
            + y.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return len(data)


def read_io(path):
    """(x (N, C, H, W), y (N, outputs)) float32 tensors from a .io file;
    ValueError naming the file and the fault."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 28 or raw[:8] != IO_MAGIC:
        raise ValueError("%s: not a .io file (it must start with %r and 5 counts)" % (path, IO_MAGIC))
    n, c, h, w, outputs = struct.unpack_from("<5I", raw, 8)
    if 0 in (n, c, h, w, outputs):
        raise ValueError("%s: batch %d, input (%d, %d, %d), %d outputs: none may be 0" % (path, n, c, h, w, outputs))
    inputs = n * c * h * w
    if len(raw) != 28 + 4 * (inputs + n * outputs):
        raise ValueError("%s: %d bytes, but batch %d of (%d, %d, %d) and %d outputs need %d"
                         % (path, len(raw), n, c, h, w, outputs, 28 + 4 * (inputs + n * outputs)))
    values = torch.frombuffer(bytearray(raw[28:]), dtype=torch.float32)
    if sys.byteorder != "little":
        values = values.view(torch.int32).byteswap().view(torch.float32)  # pragma: no cover
    return values[:inputs].reshape(n, c, h, w).clone(), values[inputs:].reshape(n, outputs).clone()


# ---------------------------------------------------------------- computing

def forward(model, x):
    """The model's outputs in eval mode, one row per sample."""
    with torch.no_grad():
        return model.eval()(x).reshape(len(x), -1)


def images(name, shape):
    """A batch like images: uniform in [0, 1), seeded by the case's name."""
    generator = torch.Generator().manual_seed(zlib.crc32(("%s/x" % name).encode()))
    return torch.rand(shape, generator=generator)


def init_weights(model, gain=1.0):
    """Weights from U(-a, a) with a = gain * sqrt(6 / fan_in) (He uniform
    for gain 1) and biases from U(-0.2, 0.2), from torch's seeded generator:
    larger than PyTorch's default init, whose deep nets give nearly the same
    outputs for every input, so that a wrong weight or a wrong layer shows.
    Batch norm layers (in residual blocks too) get scales U(0.5, 1.5),
    shifts U(-0.2, 0.2), running means U(-0.5, 0.5), running variances
    U(0.5, 2) and a count of 7 batches: statistics as if trained."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                limit = gain * (6.0 / layer.weight[0].numel()) ** 0.5
                layer.weight.uniform_(-limit, limit)
                layer.bias.uniform_(-0.2, 0.2)
            if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.2, 0.2)
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.num_batches_tracked.fill_(7)


def round_weights(model, dtype):
    """Rounds the float32 weights to dtype (F16, BF16) and back, in place:
    the expected outputs are then those of the weights as the file stores
    them."""
    torch_type = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch_type).to(torch.float32))


def condition(name, model, x, y):
    """The largest |float32 - float64| output; stops if it exceeds the limit."""
    with torch.no_grad():
        y64 = forward(copy.deepcopy(model).double(), x.double())
    distance = float((y.double() - y64).abs().max())
    if distance > CONDITION_LIMIT:
        sys.exit("%s: float32 outputs differ from float64 by %.3g > %g: badly conditioned, change the case"
                 % (name, distance, CONDITION_LIMIT))
    return distance


def mistakes(name, model, x, y):
    """The smallest output change among the layout mistakes a reader could
    make: each conv's kernels flipped (convolution instead of PyTorch's
    cross-correlation), each dense weight's bytes read as (IN, OUT), each
    batch norm's running mean and variance swapped, or left as they start
    (0 and 1). Stops if one would go unnoticed."""
    changes = []
    for i, layer in model.named_modules():
        if isinstance(layer, nn.Conv2d) and layer.kernel_size[0] > 1:
            wrong = copy.deepcopy(model)
            with torch.no_grad():
                wrong.get_submodule(i).weight.copy_(layer.weight.flip(2, 3))
            changes.append(("flipped kernels in module %s" % i, wrong))
        if isinstance(layer, nn.Linear):
            wrong = copy.deepcopy(model)
            with torch.no_grad():
                out, inp = layer.weight.shape
                wrong.get_submodule(i).weight.copy_(layer.weight.reshape(inp, out).t())
            changes.append(("dense weight read as (IN, OUT) in module %s" % i, wrong))
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            for what, mean, var in (("swapped", layer.running_var, layer.running_mean.abs()),
                                    ("ignored", torch.zeros_like(layer.running_mean), torch.ones_like(layer.running_var))):
                wrong = copy.deepcopy(model)
                with torch.no_grad():
                    wrong.get_submodule(i).running_mean.copy_(mean)
                    wrong.get_submodule(i).running_var.copy_(var)
                changes.append(("running statistics %s in module %s" % (what, i), wrong))
    least = float("inf")
    for what, wrong in changes:
        change = float((forward(wrong, x) - y).abs().max())
        if change < MISTAKE_MARGIN:
            sys.exit("%s: %s changes the outputs by only %.3g: the case would not catch it" % (name, what, change))
        least = min(least, change)
    return least


# ---------------------------------------------------------------- cases

def every_layer(dtype):
    """Every layer type: conv (padded, then valid), ReLU, max-pool,
    LeakyReLU, avg-pool, tanh, flatten, dense, sigmoid, dropout, softmax."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),        # (4, 12, 12) -> (4, 6, 6)
        nn.Conv2d(4, 6, 3, stride=1, padding=0), nn.LeakyReLU(0.1),          # (6, 4, 4)
        nn.AvgPool2d(2, 2), nn.Tanh(), nn.Flatten(),                         # (6, 2, 2) -> (24)
        nn.Linear(24, 16), nn.Sigmoid(), nn.Dropout(0.25),
        nn.Linear(16, 7), nn.Softmax(dim=1))
    init_weights(model, gain=2.0)  # its average pool, tanh and sigmoid squash the differences
    round_weights(model, dtype)
    return model, (3, 12, 12)


def small_lenet():
    """LeNet-like, ending in logits; the C test builds it by hand."""
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),          # (4, 16, 16) -> (4, 8, 8)
        nn.Conv2d(4, 8, 5), nn.ReLU(), nn.MaxPool2d(2),                      # (8, 4, 4) -> (8, 2, 2)
        nn.Flatten(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10))
    init_weights(model)
    return model, (1, 16, 16)


STRIDED_CONV = {
    "format": "pt", "cnn.h.version": "1", "cnn.h.input": "2,9,9", "cnn.h.layers": "5",
    "cnn.h.layer.0": "conv2d units=3 kernel=3 stride=2 padding=1 init=glorot_uniform",  # (3, 5, 5)
    "cnn.h.layer.1": "relu",
    "cnn.h.layer.2": "conv2d units=4 kernel=5 stride=1 padding=0 init=he_uniform",      # (4, 1, 1)
    "cnn.h.layer.3": "dense units=5 init=he_normal",     # on (4, 1, 1), no flatten: a FlattenLinear
    "cnn.h.layer.4": "softmax",
}


def strided_conv():
    """A stride-2 conv, then a dense layer straight on a (4, 1, 1) conv
    output, built from metadata by cnnh.build."""
    torch.manual_seed(3)
    model = cnnh.build(STRIDED_CONV)
    assert type(model[3]) is cnnh.FlattenLinear
    init_weights(model)
    return model, (2, 9, 9)


# tests/test.h's test_add_residual_layers, as cnn.h writes its metadata
RESIDUAL = {
    "format": "pt", "cnn.h.version": "1", "cnn.h.input": "3,9,9", "cnn.h.layers": "26",
    "cnn.h.layer.0": "conv2d units=4 kernel=3 stride=1 padding=1 init=he_normal",        # (4, 9, 9)
    "cnn.h.layer.1": "batch_norm", "cnn.h.layer.2": "relu",
    "cnn.h.layer.3": "max_pool kernel=3 stride=2 padding=1 ceil_mode=1",                 # (4, 5, 5)
    "cnn.h.layer.4": "residual_begin",                                                   # module 4
    "cnn.h.layer.5": "conv2d units=4 kernel=3 stride=1 padding=1 init=glorot_uniform",
    "cnn.h.layer.6": "batch_norm", "cnn.h.layer.7": "relu",
    "cnn.h.layer.8": "conv2d units=4 kernel=3 stride=1 padding=1 init=glorot_uniform",
    "cnn.h.layer.9": "batch_norm",
    "cnn.h.layer.10": "residual_end init=glorot_uniform",                               # + x
    "cnn.h.layer.11": "relu",
    "cnn.h.layer.12": "residual_begin",                                                  # module 6
    "cnn.h.layer.13": "conv2d units=6 kernel=3 stride=2 padding=1 init=glorot_uniform",  # (6, 3, 3)
    "cnn.h.layer.14": "batch_norm",
    "cnn.h.layer.15": "residual_begin", "cnn.h.layer.16": "leaky_relu alpha=0.1",
    "cnn.h.layer.17": "residual_end init=glorot_uniform",                               # + x, inside
    "cnn.h.layer.18": "residual_end init=he_normal",                                    # + conv 1x1 stride 2 (x)
    "cnn.h.layer.19": "avg_pool kernel=2 stride=2 padding=1 ceil_mode=1",                # (6, 2, 2)
    "cnn.h.layer.20": "global_avg_pool",                                                 # (6, 1, 1)
    "cnn.h.layer.21": "dense units=5 init=glorot_uniform",                               # a FlattenLinear
    "cnn.h.layer.22": "batch_norm",                                                      # BatchNorm1d
    "cnn.h.layer.23": "relu",
    "cnn.h.layer.24": "dense units=4 init=glorot_uniform",
    "cnn.h.layer.25": "softmax",
}


def residual():
    """Batch norm on images and on a flat vector, residual blocks (an
    identity, a projection with stride 2, a block inside a block), padded
    pools in ceil mode, global average pooling: built from metadata by
    cnnh.build, as cnn.h's test_add_residual_layers."""
    torch.manual_seed(4)
    model = cnnh.build(RESIDUAL)
    assert [type(m).__name__ for m in model][4:10] == ["Residual", "ReLU", "Residual", "AvgPool2d",
                                                      "AdaptiveAvgPool2d", "FlattenLinear"]
    init_weights(model)
    return model, (3, 9, 9)


# ---------------------------------------------------------------- writing

def write_case(name, model, input_shape, dtype="F32", metadata=True, inputs=None):
    """Checks the case, then writes NAME.safetensors (through cnnh.save, or
    without metadata as a bare state_dict) and NAME.io into fixtures/. The
    inputs are seeded by `inputs` (default: the name)."""
    x = images(inputs or name, (BATCH,) + input_shape)
    y = forward(model, x)
    distance = condition(name, model, x, y)
    least = mistakes(name, model, x, y)
    with tempfile.TemporaryDirectory(dir=FIXTURES) as scratch:
        model_path, io_path = os.path.join(scratch, name + ".safetensors"), os.path.join(scratch, name + ".io")
        if metadata:
            cnnh.save(model, model_path, input_shape, dtype)
            again = cnnh.load(model_path)
        else:
            # as PyTorch's tools write a state_dict: no metadata, the data
            # laid out by name (as the reference writer does), padded header
            cnnh.write_safetensors(model_path, dict(sorted(model.state_dict().items())), None, dtype)
            tensors, found = cnnh.read_safetensors(model_path)
            assert found == {}, "%s: no metadata was to be written" % name
            with open(model_path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                assert f.read(n).endswith(b" "), "%s: the header was to end in padding" % name
            again = copy.deepcopy(model)
            again.load_state_dict(tensors)
        write_io(io_path, x, y)
        x_again, y_again = read_io(io_path)
        if not (torch.equal(forward(again, x), y) and torch.equal(x_again, x) and torch.equal(y_again, y)):
            sys.exit("%s: the files read back do not give the same outputs" % name)
        size = 0
        for path in (model_path, io_path):
            size += os.path.getsize(path)
            os.replace(path, os.path.join(FIXTURES, os.path.basename(path)))
    print("%-20s %6d bytes  %s  outputs %d  |float32 - float64| %.1e  least layout mistake %.3g"
          % (name, size, dtype.ljust(4), y.shape[1], distance, least))
    return size


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    total = 0
    for dtype in ("F32", "F16", "BF16"):
        model, shape = every_layer(dtype)
        total += write_case("every_layer_" + dtype.lower(), model, shape, dtype, inputs="every_layer")
    model, shape = small_lenet()
    total += write_case("small_lenet_logits", model, shape, metadata=False)
    model, shape = strided_conv()
    assert cnnh.describe(model, shape) == STRIDED_CONV, "describe() is not build()'s inverse"
    total += write_case("strided_conv", model, shape)
    model, shape = residual()
    assert cnnh.describe(model, shape) == RESIDUAL, "describe() is not build()'s inverse"
    total += write_case("residual", model, shape)
    print("total %d bytes" % total)
    if total > SIZE_LIMIT:
        sys.exit("the fixtures take %d bytes, more than the %d they may" % (total, SIZE_LIMIT))


if __name__ == "__main__":
    main()
