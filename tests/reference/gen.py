#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that tests/test_reference.c checks
cnn.h against (issue 3). Run from anywhere with Debian's python3-torch:

    make fixtures        # or: /usr/bin/python3 tests/reference/gen.py
    /usr/bin/python3 tests/reference/gen.py batch_norm residual   # only the
                         # cases whose names start with one of these words

Every case is computed by PyTorch in float32 on the CPU, as the fixtures
store it, and a second time in float64 from the same float32 inputs. The
float32 result's distance from the float64 one is float32 rounding and
nothing else; if it comes near the test's tolerance the case is badly
conditioned (a ReLU input or a max-pool tie within rounding of zero, an Adam
gradient near epsilon) and generation stops rather than write a fixture the
C test could only match by luck.

The file format and the list of cases are in tests/reference/README.md.
"""
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"CNNREF1\n"
KIND_VALUES, KIND_GENERATED, KIND_OFFSET = 0, 1, 2

# Keep these equal to the tolerances in tests/test_reference.c (which says
# why they are what they are): a value passes when
#   |got - want| <= tol * max(|want|, floor * max|want over the tensor|).
TOL_LAYER, TOL_NET = 1e-5, 1e-4
FLOOR = 0.1             # every comparison but the next
FLOOR_TRAJECTORY = 1.0  # LeNet-5 weights after 3 optimiser steps
# The float32-vs-float64 distance a case may use, as a fraction of its
# tolerance: rounding alone must leave the C implementation most of it.
CONDITION_MARGIN = 0.5

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# Case-name prefixes from the command line: only those cases are computed
# and written. Another CPU may round PyTorch's float32 sums differently in
# the last bit, so regenerating everything elsewhere rewrites every file;
# a new case can be added without touching the others.
SELECTED = sys.argv[1:]


def selected(name):
    return not SELECTED or any(name.startswith(prefix) for prefix in SELECTED)


# ---------------------------------------------------------------- generator

def generate(seed, count, lo, hi):
    """count float32 values: splitmix64 from seed; u = (z >> 40) / 2^24 in
    [0, 1); value = float32(lo + (hi - lo) * u) computed in double.
    tests/test_reference.c (ref_generate) computes the same bits."""
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) * (1.0 / 16777216.0)
    return (float(lo) + (float(hi) - float(lo)) * u).astype(np.float32)


class Fixture:
    """One case: an ordered list of named tensors, given or expected."""

    def __init__(self, name):
        self.name = name
        self.records = []
        self.values = {}

    def given(self, tensor, shape, lo, hi):
        """A generated input: stored as its recipe, not its values."""
        seed = zlib.crc32(("%s/%s" % (self.name, tensor)).encode())
        count = int(np.prod(shape))
        value = generate(seed, count, lo, hi).reshape(shape)
        self.records.append((tensor, KIND_GENERATED, shape, (seed, lo, hi)))
        self.values[tensor] = value
        return value

    def put(self, tensor, value):
        """Stored float32 values (expected results, labels, masks)."""
        value = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        shape = value.shape if value.ndim else (1,)
        assert tensor not in self.values, tensor
        self.records.append((tensor, KIND_VALUES, shape, value.reshape(-1)))
        self.values[tensor] = value

    def put_offset(self, tensor, value, base):
        """Stored as 16-bit steps from an earlier tensor: value = base +
        scale * q, q in -32767..32767. For weights after a few optimiser steps,
        whose change from the start is all that matters: the rounding,
        max|change| / 65534, is checked to stay under 2% of what the test
        tolerates."""
        value = np.asarray(value, dtype=np.float32)
        start = self.values[base].astype(np.float64)
        assert value.shape == start.shape, tensor
        change = value.astype(np.float64) - start
        scale = float(np.max(np.abs(change))) / 32767.0 or 1.0
        q = np.rint(change / scale).astype(np.int16)
        decoded = (start + scale * q.astype(np.float64)).astype(np.float32)
        self.records.append((tensor, KIND_OFFSET, value.shape, (base, scale, q.reshape(-1))))
        self.values[tensor] = decoded
        return float(np.max(np.abs(decoded.astype(np.float64) - value)))

    def write(self):
        if not selected(self.name):
            return 0
        out = [MAGIC, struct.pack("<I", len(self.records))]
        for tensor, kind, shape, payload in self.records:
            name = tensor.encode("ascii")
            assert 1 <= len(shape) <= 4
            out.append(struct.pack("<H", len(name)) + name)
            out.append(struct.pack("<BB", kind, len(shape)))
            out.append(struct.pack("<%dI" % len(shape), *shape))
            if kind == KIND_VALUES:
                out.append(payload.astype("<f4").tobytes())
            elif kind == KIND_GENERATED:
                seed, lo, hi = payload
                out.append(struct.pack("<Qdd", seed, lo, hi))
            else:
                base, scale, q = payload
                out.append(struct.pack("<H", len(base)) + base.encode("ascii"))
                out.append(struct.pack("<d", scale) + q.astype("<i2").tobytes())
        path = os.path.join(HERE, self.name + ".bin")
        data = b"".join(out)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        return len(data)


# ---------------------------------------------------------------- checks

def distance(got, want, floor_fraction):
    """The test's measure: max |got - want| / max(|want|, floor), with floor
    = floor_fraction * max|want|."""
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    floor = max(floor_fraction * float(np.max(np.abs(want))), 1e-30)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), floor)))


def check_conditioning(case, f32, f64, tol, floor_of=lambda key: FLOOR, baseline=None):
    """Each expected tensor computed in float32 must sit well inside the
    tolerance of the float64 result, measured as the C test measures it
    (minus baseline[key] first where the test compares a change); returns
    the worst distance as a fraction of the tolerance."""
    worst = 0.0
    for key in f32:
        a, b = f32[key].astype(np.float64), f64[key].astype(np.float64)
        if baseline and key in baseline:
            a, b = a - baseline[key], b - baseline[key]
        d = distance(a, b, floor_of(key)) / tol
        worst = max(worst, d)
        if d > CONDITION_MARGIN:
            sys.exit("%s: %s float32 vs float64 distance is %.2f of the tolerance (limit %.2f): "
                     "badly conditioned, change the seed" % (case, key, d, CONDITION_MARGIN))
    return worst


def t(array, dtype):
    return torch.tensor(np.asarray(array, dtype=np.float64), dtype=dtype)


def leaf(array, dtype):
    return t(array, dtype).requires_grad_(True)


def np32(tensor):
    return tensor.detach().to(torch.float32).numpy()


def run_case(fixture, compute, tol, floor_of=lambda key: FLOOR, baseline=None, offsets=None):
    """compute(dtype) -> dict of expected tensors; stores the float32 ones
    after checking them against float64; offsets[key] names the tensor to
    store key as 16-bit steps from. A case left out on the command line is
    not computed."""
    if not selected(fixture.name):
        return 0
    f32 = {k: np32(v) for k, v in compute(torch.float32).items()}
    f64 = {k: v.detach().numpy() for k, v in compute(torch.float64).items()}
    worst = check_conditioning(fixture.name, f32, f64, tol, floor_of, baseline)
    for key, value in f32.items():
        if offsets and key in offsets:
            error = fixture.put_offset(key, value, offsets[key])
            budget = tol * floor_of(key) * float(np.max(np.abs(value)))
            assert error <= 0.02 * budget, "%s: 16-bit rounding %.3g of %.3g" % (key, error, budget)
        else:
            fixture.put(key, value)
    size = fixture.write()
    print("%-34s %7d bytes  float32 rounding uses %.2f of the tolerance" % (fixture.name + ".bin", size, worst))
    return size


# ---------------------------------------------------------------- single layers
# Each layer's backward pass is checked through L = sum(y * dy) for a fixed
# random dy, so the gradient arriving at the layer's output is exactly dy.

def conv2d_case(name, n, c, h, w, oc, k, s, p):
    assert (h + 2 * p - k) % s == 0 and (w + 2 * p - k) % s == 0, "cnn.h needs an exact tiling"
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    fx = Fixture(name)
    fx.put("config", [s, p])
    x = fx.given("x", (n, c, h, w), -1.0, 1.0)
    wt = fx.given("weight", (oc, c, k, k), -0.5, 0.5)
    b = fx.given("bias", (oc,), -0.5, 0.5)
    dy = fx.given("dy", (n, oc, oh, ow), -1.0, 1.0)

    def compute(dtype):
        xs, ws, bs = leaf(x, dtype), leaf(wt, dtype), leaf(b, dtype)
        y = F.conv2d(xs, ws, bs, stride=s, padding=p)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad, "dweight": ws.grad, "dbias": bs.grad}

    return run_case(fx, compute, TOL_LAYER)


def dense_case(name, n, inputs, outputs):
    fx = Fixture(name)
    x = fx.given("x", (n, inputs), -1.0, 1.0)
    # cnn.h keeps dense weights as (IN, OUT), the transpose of nn.Linear's
    # (OUT, IN): the fixture stores weight and dweight in cnn.h's layout.
    wt = fx.given("weight", (inputs, outputs), -0.5, 0.5)
    b = fx.given("bias", (outputs,), -0.5, 0.5)
    dy = fx.given("dy", (n, outputs), -1.0, 1.0)

    def compute(dtype):
        xs, bs = leaf(x, dtype), leaf(b, dtype)
        ws = leaf(wt.T, dtype)  # nn.Linear layout (OUT, IN)
        y = F.linear(xs, ws, bs)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad, "dweight": ws.grad.T.contiguous(), "dbias": bs.grad}

    return run_case(fx, compute, TOL_LAYER)


def pool_case(name, kind, n, c, h, w, k, s, ties=False):
    """ties: inputs rounded to multiples of 0.5, so that most windows hold
    equal maxima; PyTorch (and cnn.h) send the gradient to the first, in
    row-major order."""
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    fx = Fixture(name)
    fx.put("config", [k, s])
    if ties:
        raw = generate(zlib.crc32((name + "/x").encode()), n * c * h * w, -1.25, 1.25)
        x = (np.round(raw * 2.0) / 2.0).astype(np.float32).reshape(n, c, h, w)
        fx.put("x", x)
    else:
        x = fx.given("x", (n, c, h, w), -1.0, 1.0)
    dy = fx.given("dy", (n, c, oh, ow), -1.0, 1.0)
    if kind == "max" and not ties:  # no ties inside a window: which one wins is a convention
        win = torch.tensor(x.astype(np.float64)).unfold(2, k, s).unfold(3, k, s).reshape(n, c, oh, ow, k * k)
        top = win.topk(2, dim=-1).values
        assert float((top[..., 0] - top[..., 1]).min()) > 1e-3, name + ": tie in a max-pool window"

    def compute(dtype):
        xs = leaf(x, dtype)
        if kind == "max":
            y = F.max_pool2d(xs, k, s)
        else:
            y = F.avg_pool2d(xs, k, s)
        assert y.shape == (n, c, oh, ow)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad}

    return run_case(fx, compute, TOL_LAYER)


def activation_case(name, fn, lo, hi, shape=(2, 3, 4, 5), zeros=False):
    """zeros: every third input exactly 0, where ReLU's derivative is a
    convention (PyTorch: 0 for ReLU, alpha for LeakyReLU)."""
    fx = Fixture(name)
    if zeros:
        x = generate(zlib.crc32((name + "/x").encode()), int(np.prod(shape)), lo, hi)
        x[::3] = 0.0
        x = x.reshape(shape)
        fx.put("x", x)
    else:
        x = fx.given("x", shape, lo, hi)
        assert float(np.min(np.abs(x))) > 1e-3, name + ": an input at the kink"
    dy = fx.given("dy", shape, -1.0, 1.0)

    def compute(dtype):
        xs = leaf(x, dtype)
        y = fn(xs)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad}

    return run_case(fx, compute, TOL_LAYER)


def softmax_cross_entropy_case(name, n, classes, lo, hi, label_seed):
    """cnn.h's last layer is softmax and its loss the mean -log p[label]; the
    fused backward gives d loss / d logits. PyTorch: F.cross_entropy on the
    logits (mean over the batch)."""
    fx = Fixture(name)
    logits = fx.given("logits", (n, classes), lo, hi)
    labels = np.random.RandomState(label_seed).randint(0, classes, size=n)
    fx.put("labels", labels)

    def compute(dtype):
        zs = leaf(logits, dtype)
        loss = F.cross_entropy(zs, torch.tensor(labels, dtype=torch.long))
        loss.backward()
        return {"probabilities": F.softmax(zs.detach(), dim=1), "loss": loss.reshape(1), "dlogits": zs.grad}

    return run_case(fx, compute, TOL_LAYER)


def softmax_backward_case(name, n, classes):
    """Softmax alone with an arbitrary upstream gradient (cnn_model_backward_from)."""
    fx = Fixture(name)
    logits = fx.given("logits", (n, classes), -3.0, 3.0)
    dy = fx.given("dy", (n, classes), -1.0, 1.0)

    def compute(dtype):
        zs = leaf(logits, dtype)
        p = F.softmax(zs, dim=1)
        (p * t(dy, dtype)).sum().backward()
        return {"probabilities": p, "dlogits": zs.grad}

    return run_case(fx, compute, TOL_LAYER)


def dropout_case(name, shape, rate, seed):
    """cnn.h draws its masks from its own RNG, so the mask is PyTorch's, stored
    as the values it multiplies by (0 or 1 / (1 - rate)): y = x * mask and
    dx = dy * mask for that mask."""
    fx = Fixture(name)
    fx.put("config", [rate])
    x = fx.given("x", shape, -1.0, 1.0)
    dy = fx.given("dy", shape, -1.0, 1.0)
    torch.manual_seed(seed)
    mask = F.dropout(torch.ones(shape), p=rate, training=True)  # PyTorch's inverted-dropout scale
    assert 0 < int((mask == 0).sum()) < mask.numel()
    fx.put("mask", mask.numpy())

    def compute(dtype):
        xs = leaf(x, dtype)
        torch.manual_seed(seed)
        y = F.dropout(xs, p=rate, training=True)
        assert torch.equal(y == 0, mask == 0), "PyTorch drew a different mask"
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad}

    return run_case(fx, compute, TOL_LAYER)


# ---------------------------------------------------------------- optimisers
# The update formulas alone: a parameter vector of OPT_PARAMS values (the C
# test uses a dense 16 -> 8 layer, whose weights and biases are one flat block
# in cnn.h) and three given gradients, with magnitudes from 1 down to 1e-9
# (below Adam's epsilon), exact zeros and sign changes between steps. cnn.h
# sees exactly PyTorch's gradients, so only the arithmetic can differ.

OPT_IN, OPT_OUT = 16, 8
OPT_PARAMS = OPT_IN * OPT_OUT + OPT_OUT


def optimizer_case(name, kind, settings):
    """settings: the cnn_optimizer_desc values, also stored as "config"
    (Adam: lr, beta1, beta2, eps; SGD: lr, momentum); zero means cnn.h's
    default, which the C test leaves to cnn.h, so the defaults are checked
    against PyTorch too."""
    fx = Fixture(name)
    fx.put("config", settings)
    p0 = fx.given("params", (OPT_PARAMS,), -1e-3, 1e-3)
    grads = []
    for step in range(1, 4):
        sign = fx.given("g%d_sign" % step, (OPT_PARAMS,), -1.0, 1.0)
        exponent = fx.given("g%d_exponent" % step, (OPT_PARAMS,), -9.0, 0.0)
        g = (np.sign(sign) * 10.0 ** exponent.astype(np.float64)).astype(np.float32)
        g[step::11] = 0.0
        fx.put("grad%d" % step, g)
        grads.append(g)
    if kind == "adam":
        lr, b1, b2, eps = settings
        lr, b1, b2, eps = lr or 1e-3, b1 or 0.9, b2 or 0.999, eps or 1e-7
    else:
        lr, momentum = settings
        lr = lr or 1e-2

    def compute(dtype):
        p = leaf(p0, dtype)
        if kind == "adam":
            opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
        else:
            opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
        out = {}
        for step, g in enumerate(grads, 1):
            p.grad = t(g, dtype)
            opt.step()
            out["params%d" % step] = p.detach().clone()
        return out

    # compared as the change from params: the update is what is under test
    baseline = {"params%d" % step: p0.astype(np.float64) for step in range(1, 4)}
    return run_case(fx, compute, TOL_LAYER, baseline=baseline)


# ---------------------------------------------------------------- LeNet-5

LENET = [  # name, parameter shape in cnn.h's layout, init limit
    ("conv1.weight", (6, 1, 5, 5), (6.0 / (25 + 150)) ** 0.5),
    ("conv1.bias", (6,), 0.1),
    ("conv2.weight", (16, 6, 5, 5), (6.0 / (150 + 400)) ** 0.5),
    ("conv2.bias", (16,), 0.1),
    ("fc1.weight", (400, 120), (6.0 / (400 + 120)) ** 0.5),  # dense: (IN, OUT)
    ("fc1.bias", (120,), 0.1),
    ("fc2.weight", (120, 84), (6.0 / (120 + 84)) ** 0.5),
    ("fc2.bias", (84,), 0.1),
    ("fc3.weight", (84, 10), (6.0 / (84 + 10)) ** 0.5),
    ("fc3.bias", (10,), 0.1),
]
LENET_BATCH, LENET_STEPS = 8, 3


def lenet_params(values, dtype):
    """Leaf tensors in PyTorch's layout: dense weights transposed to (OUT, IN)."""
    params = {}
    for name, _, _ in LENET:
        v = values[name]
        if name.startswith("fc") and name.endswith("weight"):
            v = v.T
        params[name] = leaf(v, dtype)
    return params


def to_cnn_layout(name, tensor):
    if name.startswith("fc") and name.endswith("weight"):
        return tensor.T.contiguous()
    return tensor


def lenet_forward(p, x):
    h = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=2)), 2, 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"])), 2, 2)
    h = h.flatten(1)
    h = F.relu(F.linear(h, p["fc1.weight"], p["fc1.bias"]))
    h = F.relu(F.linear(h, p["fc2.weight"], p["fc2.bias"]))
    return F.linear(h, p["fc3.weight"], p["fc3.bias"])


def lenet_case():
    """One file, three tests: gradients on batch 0; then 3 Adam steps and,
    from the same starting weights, 3 SGD-momentum steps, step t on batch t
    (three different batches)."""
    fx = Fixture("lenet5")
    init = {name: fx.given(name, shape, -limit, limit) for name, shape, limit in LENET}
    rs = np.random.RandomState(5)
    batches = []
    for step in range(LENET_STEPS):
        x = fx.given("x%d" % step, (LENET_BATCH, 1, 28, 28), 0.0, 1.0)
        labels = rs.randint(0, 10, size=LENET_BATCH)
        fx.put("labels%d" % step, labels)
        batches.append((x, labels))

    def loss_of(p, step, dtype):
        x, labels = batches[step]
        xs = leaf(x, dtype)
        logits = lenet_forward(p, xs)
        return xs, logits, F.cross_entropy(logits, torch.tensor(labels, dtype=torch.long))

    def gradients(dtype):
        p = lenet_params(init, dtype)
        xs, logits, loss = loss_of(p, 0, dtype)
        loss.backward()
        out = {"loss": loss.reshape(1), "probabilities": F.softmax(logits.detach(), dim=1), "grad.input": xs.grad}
        for name, _, _ in LENET:
            out["grad." + name] = to_cnn_layout(name, p[name].grad)
        return out

    def trajectory(kind):
        def compute(dtype):
            p = lenet_params(init, dtype)
            if kind == "adam":  # cnn.h's defaults: lr 1e-3, betas .9/.999, eps 1e-7
                opt = torch.optim.Adam(p.values(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
            else:
                opt = torch.optim.SGD(p.values(), lr=0.01, momentum=0.9)
            losses = []
            for step in range(LENET_STEPS):
                opt.zero_grad()
                _, _, loss = loss_of(p, step, dtype)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            out = {kind + ".losses": torch.stack(losses)}
            for name, _, _ in LENET:
                out[kind + "." + name] = to_cnn_layout(name, p[name].detach())
            return out
        return compute

    def compute(dtype):
        out = gradients(dtype)
        out.update(trajectory("adam")(dtype))
        out.update(trajectory("sgd")(dtype))
        return out

    # The weights after the optimiser steps are compared on an absolute
    # scale (FLOOR_TRAJECTORY; see tests/test_reference.c for why).
    def floor_of(key):
        kind, _, name = key.partition(".")
        return FLOOR_TRAJECTORY if kind in ("adam", "sgd") and name in init else FLOOR

    offsets = {"%s.%s" % (kind, name): name for kind in ("adam", "sgd") for name, _, _ in LENET}
    return run_case(fx, compute, TOL_NET, floor_of, offsets=offsets)


# ---------------------------------------------------------------- batch norm, residual blocks, padded pools
# PyTorch's BatchNorm2d / BatchNorm1d with their defaults (momentum 0.1,
# eps 1e-5, running statistics from mean 0 and variance 1); cnn.h's batch
# norm is one layer for both (a dense layer's output is (C, 1, 1)).

BN_EPS, BN_MOMENTUM = 1e-5, 0.1


def batch_norm_train_case(name, shape):
    """Training mode: the batch's own mean and (biased) variance normalise;
    y, dx, dweight (gamma), dbias (beta) and the running statistics after
    this one step (the unbiased variance goes into them)."""
    fx = Fixture(name)
    c = shape[1]
    x = fx.given("x", shape, -1.0, 3.0)  # mean ~1: the centring matters
    gamma = fx.given("weight", (c,), 0.5, 1.5)
    beta = fx.given("bias", (c,), -0.5, 0.5)
    dy = fx.given("dy", shape, -1.0, 1.0)

    def compute(dtype):
        xs, ws, bs = leaf(x, dtype), leaf(gamma, dtype), leaf(beta, dtype)
        mean, var = torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype)
        y = F.batch_norm(xs, mean, var, ws, bs, training=True, momentum=BN_MOMENTUM, eps=BN_EPS)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad, "dweight": ws.grad, "dbias": bs.grad, "running_mean": mean, "running_var": var}

    return run_case(fx, compute, TOL_LAYER)


def batch_norm_eval_case(name, shape):
    """Evaluation mode: the given running statistics normalise; the
    backward pass treats them as constants."""
    fx = Fixture(name)
    c = shape[1]
    x = fx.given("x", shape, -1.0, 3.0)
    gamma = fx.given("weight", (c,), 0.5, 1.5)
    beta = fx.given("bias", (c,), -0.5, 0.5)
    mean = fx.given("running_mean", (c,), 0.5, 1.5)
    var = fx.given("running_var", (c,), 0.5, 2.0)
    dy = fx.given("dy", shape, -1.0, 1.0)

    def compute(dtype):
        xs, ws, bs = leaf(x, dtype), leaf(gamma, dtype), leaf(beta, dtype)
        y = F.batch_norm(xs, t(mean, dtype), t(var, dtype), ws, bs, training=False, eps=BN_EPS)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad, "dweight": ws.grad, "dbias": bs.grad}

    return run_case(fx, compute, TOL_LAYER)


def batch_norm_running_stats_case(name, shape, steps):
    """nn.BatchNorm2d / 1d in training mode on `steps` different batches x1..,
    each from its own range, so that the running estimates move: running_mean
    and running_var after every step, and the last step's output y (gamma 1,
    beta 0: the layer's starting values)."""
    fx = Fixture(name)
    c = shape[1]
    fx.put("config", [steps])
    xs = [fx.given("x%d" % step, shape, -1.0 + 0.5 * step, 1.0 + step) for step in range(1, steps + 1)]

    def compute(dtype):
        bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(c).to(dtype)
        bn.train()
        out = {}
        for step, x in enumerate(xs, 1):
            y = bn(t(x, dtype))
            out["running_mean%d" % step] = bn.running_mean.detach().clone()
            out["running_var%d" % step] = bn.running_var.detach().clone()
        assert int(bn.num_batches_tracked) == steps
        out["y"] = y
        return out

    return run_case(fx, compute, TOL_LAYER)


def relu_margin(case, z, least=1e-3):
    """A ReLU input within rounding of 0 could take either side in cnn.h."""
    smallest = float(torch.min(torch.abs(z.detach().to(torch.float64))))
    if smallest <= least:
        sys.exit("%s: a ReLU input is %.2g from 0: change the case" % (case, smallest))


def residual_identity_case(name, n, c, h, w):
    """cnn_add_residual_begin; conv 3x3 p1; relu; conv 3x3 p1;
    cnn_add_residual_end: y = conv2(relu(conv1(x))) + x."""
    fx = Fixture(name)
    x = fx.given("x", (n, c, h, w), -1.0, 1.0)
    p = {}
    for conv in ("conv1", "conv2"):
        p[conv + ".weight"] = fx.given(conv + ".weight", (c, c, 3, 3), -0.4, 0.4)
        p[conv + ".bias"] = fx.given(conv + ".bias", (c,), -0.2, 0.2)
    dy = fx.given("dy", (n, c, h, w), -1.0, 1.0)

    def compute(dtype):
        xs = leaf(x, dtype)
        q = {k: leaf(v, dtype) for k, v in p.items()}
        z = F.conv2d(xs, q["conv1.weight"], q["conv1.bias"], padding=1)
        relu_margin(name, z)
        y = F.conv2d(F.relu(z), q["conv2.weight"], q["conv2.bias"], padding=1) + xs
        (y * t(dy, dtype)).sum().backward()
        out = {"y": y, "grad.input": xs.grad}
        out.update({"grad." + k: v.grad for k, v in q.items()})
        return out

    return run_case(fx, compute, TOL_LAYER)


def residual_projection_case(name, n, c, h, w, oc):
    """A ResNet block that halves the image: begin; conv 3x3 s2 p1 (c -> oc);
    batch norm; relu; conv 3x3 p1; batch norm; end, whose projection is a
    1x1 conv with stride 2 (proj.weight (oc, c, 1, 1), proj.bias):
    y = bn2(conv2(relu(bn1(conv1(x))))) + proj(x), batch norm in training
    mode (batch statistics). A conv's bias just before a batch norm changes
    nothing (the batch's mean takes it away again): its gradient is 0 plus
    rounding, not stored (the C test checks that it is tiny)."""
    fx = Fixture(name)
    x = fx.given("x", (n, c, h, w), -1.0, 1.0)
    shapes = [("conv1.weight", (oc, c, 3, 3), 0.4), ("conv1.bias", (oc,), 0.2),
              ("bn1.weight", (oc,), None), ("bn1.bias", (oc,), 0.3),
              ("conv2.weight", (oc, oc, 3, 3), 0.4), ("conv2.bias", (oc,), 0.2),
              ("bn2.weight", (oc,), None), ("bn2.bias", (oc,), 0.3),
              ("proj.weight", (oc, c, 1, 1), 0.6), ("proj.bias", (oc,), 0.2)]
    p = {}
    for key, shape, limit in shapes:
        p[key] = fx.given(key, shape, 0.5, 1.5) if limit is None else fx.given(key, shape, -limit, limit)
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    dy = fx.given("dy", (n, oc, oh, ow), -1.0, 1.0)

    def compute(dtype):
        xs = leaf(x, dtype)
        q = {k: leaf(v, dtype) for k, v in p.items()}

        def bn(z, which):
            return F.batch_norm(z, None, None, q[which + ".weight"], q[which + ".bias"], training=True, eps=BN_EPS)

        z = bn(F.conv2d(xs, q["conv1.weight"], q["conv1.bias"], stride=2, padding=1), "bn1")
        relu_margin(name, z)
        body = bn(F.conv2d(F.relu(z), q["conv2.weight"], q["conv2.bias"], padding=1), "bn2")
        y = body + F.conv2d(xs, q["proj.weight"], q["proj.bias"], stride=2)
        assert y.shape == (n, oc, oh, ow)
        (y * t(dy, dtype)).sum().backward()
        out = {"y": y, "grad.input": xs.grad}
        out.update({"grad." + k: v.grad for k, v in q.items() if k not in ("conv1.bias", "conv2.bias")})
        return out

    return run_case(fx, compute, TOL_LAYER)


def residual_nested_case(name, n, c, h, w, oc):
    """Two blocks, one inside the other, both with a projection:
    outer begin; conv_a 3x3 p1 (c -> oc); inner begin; conv_b 3x3 s2 p1;
    inner end (inner_proj 1x1 s2, oc -> oc); outer end (outer_proj 1x1 s2,
    c -> oc). h1 = conv_a(x); y = conv_b(h1) + inner_proj(h1) + outer_proj(x).
    No activation: nothing here has a kink."""
    fx = Fixture(name)
    x = fx.given("x", (n, c, h, w), -1.0, 1.0)
    shapes = [("conv_a.weight", (oc, c, 3, 3)), ("conv_a.bias", (oc,)), ("conv_b.weight", (oc, oc, 3, 3)),
              ("conv_b.bias", (oc,)), ("inner_proj.weight", (oc, oc, 1, 1)), ("inner_proj.bias", (oc,)),
              ("outer_proj.weight", (oc, c, 1, 1)), ("outer_proj.bias", (oc,))]
    p = {key: fx.given(key, shape, -0.5, 0.5) for key, shape in shapes}
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    dy = fx.given("dy", (n, oc, oh, ow), -1.0, 1.0)

    def compute(dtype):
        xs = leaf(x, dtype)
        q = {k: leaf(v, dtype) for k, v in p.items()}
        h1 = F.conv2d(xs, q["conv_a.weight"], q["conv_a.bias"], padding=1)
        inner = F.conv2d(h1, q["conv_b.weight"], q["conv_b.bias"], stride=2, padding=1) + \
            F.conv2d(h1, q["inner_proj.weight"], q["inner_proj.bias"], stride=2)
        y = inner + F.conv2d(xs, q["outer_proj.weight"], q["outer_proj.bias"], stride=2)
        assert y.shape == (n, oc, oh, ow)
        (y * t(dy, dtype)).sum().backward()
        out = {"y": y, "grad.input": xs.grad}
        out.update({"grad." + k: v.grad for k, v in q.items()})
        return out

    return run_case(fx, compute, TOL_LAYER)


def pool_padding_case(name, kind, n, c, h, w, k, s, pad, ceil):
    """F.max_pool2d / F.avg_pool2d with padding and ceil_mode
    (count_include_pad True, PyTorch's default); config = k, s, pad, ceil.
    The windows that reach past the padded input in ceil mode, and (with
    padding) a last window that would start in the padding, which PyTorch
    drops, are what is under test."""
    fx = Fixture(name)
    fx.put("config", [k, s, pad, 1 if ceil else 0])
    x = fx.given("x", (n, c, h, w), -1.0, 1.0)

    def side(size):  # PyTorch's pooling_output_shape
        out = (size + 2 * pad - k + (s - 1 if ceil else 0)) // s + 1
        if ceil and (out - 1) * s >= size + pad:
            out -= 1
        return out

    oh, ow = side(h), side(w)
    dy = fx.given("dy", (n, c, oh, ow), -1.0, 1.0)
    if kind == "max":  # no ties inside a window (the padding never wins)
        for i in range(oh):
            for j in range(ow):
                r0, c0 = i * s - pad, j * s - pad
                win = x[:, :, max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w)].reshape(n, c, -1)
                top = np.sort(win.astype(np.float64), axis=-1)
                if win.shape[-1] > 1:
                    assert float((top[..., -1] - top[..., -2]).min()) > 1e-3, name + ": tie in a max-pool window"

    def compute(dtype):
        xs = leaf(x, dtype)
        if kind == "max":
            y = F.max_pool2d(xs, k, s, padding=pad, ceil_mode=ceil)
        else:
            y = F.avg_pool2d(xs, k, s, padding=pad, ceil_mode=ceil, count_include_pad=True)
        assert y.shape == (n, c, oh, ow), (name, y.shape)
        (y * t(dy, dtype)).sum().backward()
        return {"y": y, "dx": xs.grad}

    return run_case(fx, compute, TOL_LAYER)


def new_layers():
    size = batch_norm_train_case("batch_norm_train_conv", (4, 3, 5, 5))
    size += batch_norm_train_case("batch_norm_train_dense", (6, 7))          # BatchNorm1d
    size += batch_norm_eval_case("batch_norm_eval_conv", (2, 3, 4, 5))
    size += batch_norm_eval_case("batch_norm_eval_dense", (3, 5))
    size += batch_norm_running_stats_case("batch_norm_running_stats_conv", (3, 2, 4, 3), 4)
    size += batch_norm_running_stats_case("batch_norm_running_stats_dense", (5, 4), 4)
    size += residual_identity_case("residual_identity", 2, 3, 5, 5)
    size += residual_projection_case("residual_projection", 2, 3, 6, 7, 4)  # 6x7 -> 3x4
    size += residual_nested_case("residual_nested", 2, 2, 4, 5, 3)          # 4x5 -> 2x3
    # name, kind, N, C, H, W, kernel, stride, padding, ceil_mode
    size += pool_padding_case("pool_padding_max_k3_s2_p1", "max", 2, 2, 7, 8, 3, 2, 1, False)   # ResNet's stem pool
    size += pool_padding_case("pool_padding_max_k2_s2_ceil", "max", 2, 3, 7, 5, 2, 2, 0, True)  # windows 1 wide
    size += pool_padding_case("pool_padding_max_k3_s2_p1_ceil", "max", 1, 2, 6, 7, 3, 2, 1, True)
    size += pool_padding_case("pool_padding_avg_k3_s2_p1_ceil", "avg", 2, 2, 6, 7, 3, 2, 1, True)
    size += pool_padding_case("pool_padding_avg_k2_s2_ceil", "avg", 2, 3, 7, 5, 2, 2, 0, True)   # divisors 2, 1
    # 5 rows: a 4th window would start in the padding and is dropped
    size += pool_padding_case("pool_padding_avg_k2_s2_p1_ceil", "avg", 2, 2, 5, 6, 2, 2, 1, True)
    size += pool_padding_case("pool_padding_avg_k3_s1_p1", "avg", 1, 2, 4, 5, 3, 1, 1, False)
    return size


# ---------------------------------------------------------------- main

def generator_check():
    """The first values of one generated tensor, stored as plain values too,
    so the C test can prove its generator makes the same bits."""
    fx = Fixture("generator")
    a = fx.given("sample", (64,), -3.0, 5.0)
    fx.put("sample_values", a)
    b = fx.given("unit", (64,), 0.0, 1.0)
    fx.put("unit_values", b)
    size = fx.write()
    if size:
        print("%-34s %7d bytes" % ("generator.bin", size))
    return size


def main():
    total = generator_check()
    total += conv2d_case("conv2d_c1_k3_s1_p1", 2, 1, 6, 7, 3, 3, 1, 1)
    total += conv2d_case("conv2d_c3_k3_s2_p1", 2, 3, 7, 9, 4, 3, 2, 1)
    total += conv2d_case("conv2d_c3_k5_s1_p2", 2, 3, 8, 6, 2, 5, 1, 2)
    total += conv2d_case("conv2d_c1_k5_s1_p0", 2, 1, 9, 7, 4, 5, 1, 0)
    total += conv2d_case("conv2d_c3_k1_s1_p0", 2, 3, 5, 6, 5, 1, 1, 0)
    total += conv2d_case("conv2d_c3_k1_s2_p0", 2, 3, 7, 5, 4, 1, 2, 0)
    total += conv2d_case("conv2d_c1_k3_s2_p0", 2, 1, 9, 7, 3, 3, 2, 0)
    total += conv2d_case("conv2d_c3_k5_s2_p2", 2, 3, 9, 7, 5, 5, 2, 2)
    total += conv2d_case("conv2d_c3_k3_s1_p2", 2, 3, 5, 4, 3, 3, 1, 2)
    # 576 output positions and 150-long windows: crosses cnn.h's 512-column
    # and 128-deep matrix-multiply panels.
    total += conv2d_case("conv2d_c6_k5_s1_p2_24x24", 1, 6, 24, 24, 5, 5, 1, 2)
    total += max_pool_and_avg()
    total += dense_case("dense_in20_out7", 3, 20, 7)
    total += dense_case("dense_in130_out9", 5, 130, 9)  # 130 > one 128-deep panel
    total += activation_case("relu", F.relu, -2.0, 2.0)
    total += activation_case("leaky_relu_0.3", lambda x: F.leaky_relu(x, 0.3), -2.0, 2.0)
    total += activation_case("relu_zeros", F.relu, -2.0, 2.0, zeros=True)
    total += activation_case("leaky_relu_0.3_zeros", lambda x: F.leaky_relu(x, 0.3), -2.0, 2.0, zeros=True)
    total += activation_case("sigmoid", torch.sigmoid, -6.0, 6.0)
    total += activation_case("tanh", torch.tanh, -3.0, 3.0)
    total += softmax_cross_entropy_case("softmax_cross_entropy", 5, 7, -3.0, 3.0, 1)
    total += softmax_cross_entropy_case("softmax_cross_entropy_large_logits", 4, 6, 500.0, 1000.0, 2)
    total += softmax_backward_case("softmax_backward", 4, 6)
    total += dropout_case("dropout_0.25", (2, 3, 4, 4), 0.25, 3)
    total += optimizer_case("adam_default_given_grads", "adam", [0.0, 0.0, 0.0, 0.0])
    total += optimizer_case("adam_custom_given_grads", "adam", [0.01, 0.8, 0.99, 1e-5])
    total += optimizer_case("sgd_momentum_given_grads", "sgd", [0.01, 0.9])
    total += optimizer_case("sgd_plain_given_grads", "sgd", [0.1, 0.0])
    total += lenet_case()
    total += new_layers()
    print("total %d bytes" % total)


def max_pool_and_avg():
    size = pool_case("max_pool_k2_s2", "max", 2, 3, 7, 6, 2, 2)   # odd height: last row dropped
    size += pool_case("max_pool_k3_s2", "max", 2, 2, 7, 8, 3, 2)  # overlapping; last column dropped
    size += pool_case("max_pool_k2_s2_ties", "max", 2, 3, 6, 6, 2, 2, ties=True)
    size += pool_case("max_pool_k3_s2_ties", "max", 1, 2, 7, 7, 3, 2, ties=True)
    size += pool_case("avg_pool_k2_s2", "avg", 2, 3, 7, 6, 2, 2)
    size += pool_case("avg_pool_k3_s2", "avg", 2, 2, 7, 8, 3, 2)
    return size


if __name__ == "__main__":
    main()
