"""cnnh.py - cnn.h models in PyTorch, and PyTorch models for cnn.h, through
safetensors files.

    import cnnh
    model = cnnh.load("model.safetensors")     # a torch.nn.Sequential in eval mode
    probabilities = model(images)              # images: (N, C, H, W) float32

    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(6 * 14 * 14, 47), nn.Softmax(dim=1))
    cnnh.save(net, "net.safetensors", input_shape=(1, 28, 28))   # cnn.h can load it

It needs PyTorch and numpy (Debian: python3-torch, python3-numpy), not the
safetensors package: the format is small enough to read and write here, and
read_safetensors / write_safetensors do so for other files too. describe()
and build() turn a Sequential into the metadata below and back.

THE FORMAT (https://huggingface.co/docs/safetensors): an unsigned 64-bit
little-endian header length N; N bytes of UTF-8 JSON, padded with trailing
spaces; then the data section, the tensors' raw little-endian bytes. The JSON
maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)},
offsets counted from the start of the data section; the tensors tile it with
no gap or overlap, though not necessarily in the order of the keys. The
optional key "__metadata__" maps strings to strings.

WHAT cnn.h PUTS IN IT (schema version 1). Tensor names are those PyTorch
gives the modules of a torch.nn.Sequential of the same layers: layer i
(counting from 0, every layer, activations, pools, flatten, dropout and
softmax included) is module i, and holds

    conv2d      i.weight (OC, C, K, K)   i.bias (OC)
    dense       i.weight (OUT, IN)       i.bias (OUT)
    batch_norm  i.weight, i.bias, i.running_mean, i.running_var (C each,
                float) and i.num_batches_tracked (int64, no dimensions):
                nn.BatchNorm2d's (or BatchNorm1d's, on a flat input)

and the others nothing (the dense weight is in nn.Linear's layout, the
transpose of cnn.h's own (IN, OUT)). A residual block, the layers from a
residual_begin to its residual_end, is ONE module, a Residual (below): its
body's layers are the Sequential "body" inside it, named from 0 again, and
its projection, when it has one, is "shortcut", an nn.Conv2d 1x1:

    residual_end   i.shortcut.weight (OC, C, 1, 1)   i.shortcut.bias (OC)

so a block that is module 4 holds "4.body.0.weight" (the first conv of its
body) and "4.shortcut.weight", and the layer after its residual_end is
module 5; blocks nest ("4.body.2.body.0.weight"). "__metadata__" holds

    "format": "pt"
    "cnn.h.version": "1"
    "cnn.h.input": "C,H,W"                      e.g. "1,28,28"
    "cnn.h.layers": "N"                         the number of layers
    "cnn.h.layer.I"  for I in 0..N-1: the type, then key=value settings:
        conv2d units=6 kernel=5 stride=1 padding=2 init=glorot_uniform
        dense units=120 init=glorot_uniform
        relu | sigmoid | tanh | flatten | softmax
        leaky_relu alpha=0.3
        max_pool kernel=2 stride=2 | avg_pool kernel=2 stride=2
        max_pool kernel=3 stride=2 padding=1 ceil_mode=1   (padding and
                                                ceil_mode only when not 0)
        dropout rate=0.5
        batch_norm | global_avg_pool | residual_begin
        residual_end init=he_normal

The layers are cnn.h's, one key per cnn.h layer, in cnn.h's order: a
residual block's begin, its body, then its end. units is the number of
output channels or outputs; init (glorot_uniform, he_normal or he_uniform)
only tells cnn.h how to initialise the layer (residual_end: its projection)
if it trains it afresh. alpha and rate are float32 values written with the
fewest significant digits (%.Ng, N <= 9) that read back as the same
float32. Readers ignore metadata keys they do not know, and refuse layer
types and settings they do not know.

How strict load() is: every setting of a layer once (init may be left out:
glorot_uniform; a pool's padding and ceil_mode: 0), in any order,
separated by spaces; integers as decimal digits; the shapes must fit as
cnn.h requires; leaky_relu alpha=0 is refused (cnn.h's API reads 0 as
"default 0.3": write relu), and so is a dropout rate outside (0, 1); a
cnn.h.layer.I key with I >= the layer count is refused; the tensors must be
exactly those the layers hold (num_batches_tracked may be missing: 0, as
PyTorch's load_state_dict counts it then), floats as F32, F16 or BF16,
counts as I64, with the shapes above; a running variance must not be
negative. The writer puts "__metadata__" first, then the tensors sorted by
name, each as {"dtype", "shape", "data_offsets"}, as the reference (Rust)
writer does.

load() sets two attributes that save() reads back: cnnh_input_shape on the
Sequential, and cnnh_init on each conv2d and dense module and each Residual
(the init= of the file; save() writes glorot_uniform where a module has
none).

THE SAME LAYERS IN PyTorch. conv2d is nn.Conv2d(C, units, kernel, stride,
padding), whose output side (side + 2 * padding - kernel) // stride + 1
rounds down in both; dense is nn.Linear(IN, units) on a flat input;
flatten is nn.Flatten() ((C, H, W) order in both); softmax is
nn.Softmax(dim=1); max_pool and avg_pool are nn.MaxPool2d /
nn.AvgPool2d(kernel, stride, padding, ceil_mode), padding at most half the
kernel and, for the average, counted (count_include_pad=True, PyTorch's
default); leaky_relu is nn.LeakyReLU(alpha); dropout is nn.Dropout(rate);
batch_norm is nn.BatchNorm2d(C), or nn.BatchNorm1d(C) on a flat input,
with PyTorch's defaults (eps 1e-5, momentum 0.1: cnn.h's; a file does not
hold the momentum, which only training uses); global_avg_pool is
nn.AdaptiveAvgPool2d(1), whose output stays (N, C, 1, 1); a residual block
is Residual(body, shortcut): y = body(x) + shortcut(x), the shortcut
nn.Identity() when the body keeps the shape, else nn.Conv2d(C, OC, 1,
stride) with the smallest stride that maps x's height and width onto the
body's (cnn.h's rule).

One difference: cnn.h's shapes are always (C, H, W), a dense layer's output
being (units, 1, 1), so a dense layer takes any input of shape (C, 1, 1), such
as a convolution's or global_avg_pool's output with no flatten before it,
where PyTorch's nn.Linear would act on the last dimension of an (N, C, 1, 1)
tensor. load() uses FlattenLinear there (flattens, then nn.Linear): it holds
the same parameters under the same names, so the state_dict keys are those
of a plain Sequential; save() accepts it too. The other way round does not
exist: after a dense or flatten layer (with only element-wise layers
between, or a residual block whose body made it flat) the input is a flat
vector, where cnn.h refuses a conv2d or pool (and PyTorch's would get an
(N, features) tensor). So load() and build() refuse such metadata, and
save() and describe() an nn.Conv2d, a pool or nn.AdaptiveAvgPool2d after an
nn.Linear or nn.Flatten, with cnn.h's message: put conv and pool layers
before flatten and dense. A Residual adds a flat body's output to its
input flattened (or projected, then flattened), as cnn.h adds (C, 1, 1) to
(C, 1, 1).
"""
import json
import math
import os
import re
import struct

import numpy as np
import torch
from torch import nn

__all__ = ["load", "save", "build", "describe", "read_safetensors", "write_safetensors",
           "FlattenLinear", "Residual"]

SCHEMA_VERSION = "1"
INITS = ("glorot_uniform", "he_normal", "he_uniform")
DEFAULT_INIT = "glorot_uniform"
BATCH_NORM_EPS = 1e-5           # cnn.h's, and PyTorch's default
MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit

# Every dtype of the safetensors specification, with its size in bytes, and
# for those this module converts, the little-endian numpy type of its bits
# and the torch type (BF16's bits go through int16: numpy has no bfloat16).
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
_DECODE = {"BOOL": ("|b1", torch.bool), "U8": ("|u1", torch.uint8), "I8": ("|i1", torch.int8),
           "I16": ("<i2", torch.int16), "I32": ("<i4", torch.int32), "I64": ("<i8", torch.int64),
           "F16": ("<f2", torch.float16), "BF16": ("<i2", torch.bfloat16),
           "F32": ("<f4", torch.float32), "F64": ("<f8", torch.float64)}
WRITE_DTYPES = ("F32", "F16", "BF16")


# ---------------------------------------------------------------- safetensors files

def write_safetensors(path, tensors, metadata=None, dtype="F32"):
    """Writes the tensors of `tensors` (a mapping name -> tensor), each float
    one converted to `dtype` (F32, F16 or BF16, rounding to nearest even),
    each int64 one (such as batch norm's num_batches_tracked) as I64, and
    `metadata` (a dict of str -> str, or None for no "__metadata__").

    The data section holds the tensors in the mapping's order, while the
    JSON lists them sorted by name, so the offsets need not follow the keys
    (the reference writer lays the data out by name: pass a mapping sorted
    by name to do the same). The header is padded with spaces to make 8 + N
    a multiple of 8. The file is written under a temporary name, then
    renamed."""
    if dtype not in WRITE_DTYPES:
        raise ValueError("dtype must be one of %s, not %r" % (", ".join(WRITE_DTYPES), dtype))
    entries, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError("tensor name %r is not allowed" % (name,))
        if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.dtype == torch.int64):
            raise ValueError("tensor %r is not a floating-point or int64 torch.Tensor" % name)
        kind = dtype if tensor.is_floating_point() else "I64"
        blob = _encode(tensor.detach().cpu(), kind, name)
        entries[name] = {"dtype": kind, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    # The header as the reference (Rust) writer makes it: "__metadata__"
    # first, then the tensors by name, each entry's fields in the order
    # dtype, shape, data_offsets, no spaces; padded with spaces to a
    # multiple of 8 bytes.
    header = {}
    if metadata is not None:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError("metadata must map strings to strings, got %r: %r" % (key, value))
        header["__metadata__"] = dict(sorted(metadata.items()))
    header.update(sorted(entries.items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    temporary = path + ".tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for blob in blobs:
                f.write(blob)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _encode(tensor, dtype, name):
    """The little-endian bytes of a CPU tensor in dtype (a float tensor in
    F32, F16 or BF16, an int64 one in I64)."""
    numpy_type, torch_type = _DECODE[dtype]
    converted = tensor.to(torch_type).contiguous()
    if not torch.equal(torch.isfinite(converted), torch.isfinite(tensor)):
        raise ValueError("tensor %r has values beyond the range of %s" % (name, dtype))
    if torch_type is torch.bfloat16:  # numpy has no bfloat16: its bits as int16
        converted = converted.view(torch.int16)
    return converted.numpy().astype(numpy_type).tobytes()


def read_safetensors(path):
    """Reads a safetensors file: returns (tensors, metadata), tensors a dict
    name -> torch.Tensor in its stored dtype, in the order of the data
    section, metadata the "__metadata__" dict ({} if there is none).

    Checks everything and raises ValueError naming the file and the fault:
    the header length, its JSON, each entry's fields, dtypes and sizes, and
    that the tensors tile the data section exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    entries, metadata, data_start = _parse_header(raw, path)
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        if dtype not in _DECODE:
            raise ValueError("%s: tensor %r is %s, a safetensors dtype that PyTorch %s cannot hold here"
                             % (path, name, dtype, torch.__version__))
        numpy_type, torch_type = _DECODE[dtype]
        bits = np.frombuffer(raw, dtype=numpy_type, count=math.prod(shape), offset=data_start + begin)
        tensor = torch.from_numpy(bits.astype(bits.dtype.newbyteorder("=")))  # a native copy
        if torch_type is torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        tensors[name] = tensor.reshape(shape)
    return tensors, metadata


def _parse_header(raw, path):
    """Validates the header of the file's bytes `raw`; returns the entries
    (name, dtype, shape, begin, end) sorted by offset, the metadata, and
    where the data section starts."""
    def fail(message):
        raise ValueError("%s: %s" % (path, message))

    if len(raw) < 8:
        fail("%d bytes: too short for a safetensors file (8-byte header length first)" % len(raw))
    (n,) = struct.unpack_from("<Q", raw, 0)
    if n < 2 or n > MAX_HEADER_BYTES:
        fail("header length %d is not between 2 and %d bytes" % (n, MAX_HEADER_BYTES))
    if 8 + n > len(raw):
        fail("header length %d runs past the end of the file (%d bytes)" % (n, len(raw)))
    try:
        text = raw[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        fail("the header is not UTF-8 (byte %d)" % (8 + e.start))
    if not text.startswith("{"):
        fail("the header does not start with '{' (byte 8 is %r)" % text[:1])

    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                fail("the header has the key %r twice" % key)
        return dict(pairs)

    def no_constant(word):
        fail("the header holds %s, which is not JSON" % word)

    try:
        header = json.loads(text.rstrip(" "), object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        fail("the header is not valid JSON (padding may only be trailing spaces): %s at byte %d"
             % (e.msg, 8 + len(text[:e.pos].encode("utf-8"))))
    if not isinstance(header, dict):
        fail("the header is not a JSON object")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("__metadata__ must be an object of strings")

    data_size = len(raw) - 8 - n
    entries = []
    for name, info in header.items():
        where = "tensor %r" % name
        if not isinstance(info, dict):
            fail("%s: not an object" % where)
        if not {"dtype", "shape", "data_offsets"} <= set(info):  # others are ignored, as the reference reader does
            fail("%s: has fields %s, wants dtype, shape, data_offsets" % (where, sorted(info)))
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            fail("%s: unknown dtype %r" % (where, dtype))
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            fail("%s: shape %r is not a list of non-negative integers" % (where, shape))
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or offsets[0] > offsets[1]):
            fail("%s: data_offsets %r is not [begin, end] with 0 <= begin <= end" % (where, offsets))
        need = math.prod(shape) * DTYPE_BYTES[dtype]
        if offsets[1] - offsets[0] != need:
            fail("%s: data_offsets %r hold %d bytes, but %s %r needs %d"
                 % (where, offsets, offsets[1] - offsets[0], dtype, shape, need))
        entries.append((name, dtype, shape, offsets[0], offsets[1]))

    entries.sort(key=lambda e: (e[3], e[4]))
    at = 0
    for name, _, _, begin, end in entries:
        if begin != at:
            fail("tensor %r begins at data byte %d, but the tensors before it end at %d (%s)"
                 % (name, begin, at, "a gap" if begin > at else "an overlap"))
        at = end
    if at != data_size:
        fail("the tensors end at data byte %d, but the data section holds %d bytes" % (at, data_size))
    return entries, metadata, 8 + n


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---------------------------------------------------------------- layers PyTorch lacks

class FlattenLinear(nn.Linear):
    """nn.Linear on a flattened input: cnn.h's dense layer on a (C, 1, 1)
    image, such as a convolution's output with no flatten before it."""

    def forward(self, x):
        return super().forward(x.flatten(1))


class Residual(nn.Module):
    """cnn.h's residual block (cnn_add_residual_begin ... _end): the body, a
    Sequential of the block's layers, and the shortcut, nn.Identity() when
    the body keeps the shape of its input, else the projection
    nn.Conv2d(C, OC, 1, stride); y = body(x) + shortcut(x). Where the body
    makes its input flat (a flatten or dense layer in it), the shortcut's
    image (N, C, 1, 1) is flattened to match, as cnn.h adds (C, 1, 1) to
    (C, 1, 1); a projection of a flat input sees it as (N, C, 1, 1)."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = nn.Identity() if shortcut is None else shortcut

    def forward(self, x):
        y = self.body(x)
        s = x
        if type(self.shortcut) is not nn.Identity:
            s = self.shortcut(x if x.dim() == 4 else x[:, :, None, None])
        if y.dim() == 2 and s.dim() == 4:
            s = s.flatten(1)
        return y + s


# ---------------------------------------------------------------- metadata -> layers

# Each layer type's settings, in the order they are written.
LAYER_SETTINGS = {
    "conv2d": ("units", "kernel", "stride", "padding", "init"),
    "dense": ("units", "init"),
    "relu": (), "sigmoid": (), "tanh": (), "flatten": (), "softmax": (),
    "leaky_relu": ("alpha",),
    "max_pool": ("kernel", "stride", "padding", "ceil_mode"),
    "avg_pool": ("kernel", "stride", "padding", "ceil_mode"),
    "dropout": ("rate",),
    "batch_norm": (), "global_avg_pool": (), "residual_begin": (),
    "residual_end": ("init",),
}
# Settings that may be left out, and their values then: init anywhere, a
# pool's padding and ceil_mode (written only when set).
_OPTIONAL = {"init": DEFAULT_INIT, "padding": 0, "ceil_mode": 0}
_OPTIONAL_FOR = {"max_pool": ("padding", "ceil_mode"), "avg_pool": ("padding", "ceil_mode")}
# The layers that need an image (C, H, W): refused after a dense or flatten layer.
_IMAGE_LAYERS = ("conv2d", "max_pool", "avg_pool", "global_avg_pool")
_INT = re.compile(r"[0-9]{1,10}")
_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def format_float32(value):
    """The shortest %.Ng (N <= 9) of float32(value) that reads back as the
    same float32: 0.3 -> "0.3", 1e-05 -> "1e-05"."""
    value = _float32(value)
    for digits in range(1, 10):
        text = "%.*g" % (digits, value)
        if _float32(float(text)) == value:
            return text
    raise AssertionError("9 significant digits always identify a float32")


def _float32(value):
    """value rounded to the nearest float32 (to-nearest-even; +-inf beyond)."""
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _parse_layer(text, where):
    """'conv2d units=6 kernel=5 ...' -> ('conv2d', {'units': 6, ...}) with
    every setting present once, converted and in range."""
    words = text.split()
    kind, settings = (words[0] if words else ""), {}
    if kind not in LAYER_SETTINGS:
        raise ValueError("%s: unknown layer type %r (known: %s)" % (where, kind, ", ".join(LAYER_SETTINGS)))
    for word in words[1:]:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise ValueError("%s: %r is not key=value (settings are separated by spaces)" % (where, word))
        if key not in LAYER_SETTINGS[kind]:
            raise ValueError("%s: %s has no setting %r (it has: %s)"
                             % (where, kind, key, ", ".join(LAYER_SETTINGS[kind]) or "none"))
        if key in settings:
            raise ValueError("%s: setting %r given twice" % (where, key))
        if key == "init":
            if value not in INITS:
                raise ValueError("%s: init=%s is not one of %s" % (where, value, ", ".join(INITS)))
            settings[key] = value
        elif key in ("alpha", "rate"):
            number = _float32(float(value)) if _FLOAT.fullmatch(value) else math.nan
            if not math.isfinite(number):
                raise ValueError("%s: %s=%s is not a finite float32 number" % (where, key, value))
            settings[key] = number
        else:
            if not _INT.fullmatch(value) or int(value) > 2**31 - 1:
                raise ValueError("%s: %s=%s is not an integer from 0 to 2^31-1" % (where, key, value))
            settings[key] = int(value)
    for key, value in _OPTIONAL.items():  # as in cnn.h
        if key in LAYER_SETTINGS[kind] and (key == "init" or key in _OPTIONAL_FOR.get(kind, ())):
            settings.setdefault(key, value)
    missing = [key for key in LAYER_SETTINGS[kind] if key not in settings]
    if missing:
        raise ValueError("%s: %s needs %s" % (where, kind, ", ".join(key + "=" for key in missing)))
    return kind, settings


def _pool_side(side, kernel, stride, padding, ceil_mode):
    """The output side of a pool, as cnn.h and PyTorch count it: rounded
    down, or up in ceil mode but without a last window that would start in
    the right padding."""
    out = (side + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= side + padding:
        out -= 1
    return out


def _projection_stride(x, out):
    """The stride of the 1x1 convolution that maps x's (C, H, W) onto out's
    height and width (the smallest, as cnn.h takes it), or None."""
    for stride in range(1, max(x[1], x[2]) + 1):
        if (x[1] - 1) // stride + 1 == out[1] and (x[2] - 1) // stride + 1 == out[2]:
            return stride
    return None


def _plan(metadata, where=lambda i: "layer %d" % i, complete=True):
    """Reads the cnn.h metadata into the input shape and a list of layers,
    each a dict: kind, settings, in/out shapes (C, H, W), flat (whether
    PyTorch holds its input as (N, C)), and params {name: shape} (a
    residual_end's are its projection's); a residual_begin also has "end",
    the index of its residual_end, which has "begin" and "stride" (0: no
    projection). Checks the shapes as cnn.h does, and as it does refuses a
    conv2d or pool after a dense or flatten layer, and (when complete) a
    residual_begin without its end. Allocates nothing."""
    def get(key):
        if key not in metadata:
            raise ValueError("no %r in the metadata" % key)
        return metadata[key]

    if "cnn.h.version" not in metadata:
        raise ValueError("no cnn.h metadata (no 'cnn.h.version' key): the file holds weights only; "
                         "build the model yourself and load read_safetensors()'s tensors into it")
    if metadata["cnn.h.version"] != SCHEMA_VERSION:
        raise ValueError("cnn.h.version is %r; this reader knows version %s"
                         % (metadata["cnn.h.version"], SCHEMA_VERSION))
    sides = get("cnn.h.input").split(",")
    if len(sides) != 3 or not all(_INT.fullmatch(s) and 0 < int(s) <= 2**31 - 1 for s in sides):
        raise ValueError("cnn.h.input is %r, not C,H,W (three positive integers)" % metadata["cnn.h.input"])
    shape = tuple(int(s) for s in sides)
    count = get("cnn.h.layers")
    if not _INT.fullmatch(count) or int(count) < 1:
        raise ValueError("cnn.h.layers is %r, not a positive integer" % count)
    count = int(count)
    for key in metadata:
        if key.startswith("cnn.h.layer."):
            index = key[len("cnn.h.layer."):]
            if not _INT.fullmatch(index) or str(int(index)) != index or int(index) >= count:
                raise ValueError("%r does not name one of the %d layers of cnn.h.layers" % (key, count))

    layers, flat_from, input_shape, open_blocks = [], None, shape, []
    for i in range(count):
        text = get("cnn.h.layer.%d" % i)
        here = "%s (%r)" % (where(i), text)
        kind, s = _parse_layer(text, here)
        c, h, w = shape
        params, extra = {}, {}
        if kind in _IMAGE_LAYERS and flat_from is not None:
            raise ValueError("%s: %s needs an image (channels, height, width), but %s (%s) made its input "
                             "a flat vector of %d: put conv and pool layers before flatten and dense"
                             % (here, kind, where(flat_from), layers[flat_from]["kind"], c))
        if kind == "conv2d":
            k, stride, pad = s["kernel"], s["stride"], s["padding"]
            if s["units"] < 1 or k < 1 or stride < 1:
                raise ValueError("%s: conv2d needs units, kernel and stride >= 1" % here)
            span_h, span_w = h + 2 * pad - k, w + 2 * pad - k
            if span_h < 0 or span_w < 0:
                raise ValueError("%s: kernel %d, stride %d, padding %d does not fit the input %dx%d: "
                                 "the kernel is larger than the padded input" % (here, k, stride, pad, h, w))
            params = {"weight": (s["units"], c, k, k), "bias": (s["units"],)}
            out = (s["units"], span_h // stride + 1, span_w // stride + 1)
        elif kind == "dense":
            if s["units"] < 1:
                raise ValueError("%s: dense needs units >= 1" % here)
            if h != 1 or w != 1:
                raise ValueError("%s: dense needs a flat input, (C, 1, 1), and gets (%d, %d, %d): "
                                 "a flatten layer is missing" % (here, c, h, w))
            params = {"weight": (s["units"], c), "bias": (s["units"],)}
            out = (s["units"], 1, 1)
        elif kind in ("max_pool", "avg_pool"):
            k, stride, pad, ceil_mode = s["kernel"], s["stride"], s["padding"], s["ceil_mode"]
            if k < 1 or stride < 1:
                raise ValueError("%s: %s needs kernel and stride >= 1" % (here, kind))
            if ceil_mode > 1:
                raise ValueError("%s: ceil_mode must be 0 or 1" % here)
            if pad > k // 2:
                raise ValueError("%s: padding %d is more than half the %dx%d window" % (here, pad, k, k))
            if h + 2 * pad < k or w + 2 * pad < k:
                raise ValueError("%s: the %dx%d window is larger than the input %dx%d%s"
                                 % (here, k, k, h, w, " with padding %d" % pad if pad else ""))
            out = (c, _pool_side(h, k, stride, pad, ceil_mode), _pool_side(w, k, stride, pad, ceil_mode))
        elif kind == "global_avg_pool":
            out = (c, 1, 1)
        elif kind == "batch_norm":
            params = {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,),
                      "num_batches_tracked": ()}
            out = shape
        elif kind == "residual_begin":
            open_blocks.append(i)
            out = shape
        elif kind == "residual_end":
            if not open_blocks:
                raise ValueError("%s: residual_end without a residual_begin" % here)
            begin = open_blocks.pop()
            if begin == i - 1:
                raise ValueError("%s: the residual block from %s has no layers" % (here, where(begin)))
            x = layers[begin]["in"]
            stride = 0
            if x != shape:
                stride = _projection_stride(x, shape)
                if stride is None:
                    raise ValueError("%s: the residual block from %s turns %s into %s: no 1x1 convolution with a "
                                     "stride maps the one onto the other" % (here, where(begin), x, shape))
                params = {"weight": (c, x[0], 1, 1), "bias": (c,)}
            layers[begin]["end"] = i
            extra = {"begin": begin, "stride": stride}
            out = shape
        elif kind == "flatten":
            out = (c * h * w, 1, 1)
        elif kind == "softmax":
            if h != 1 or w != 1:
                raise ValueError("%s: softmax needs a flat input, (C, 1, 1), and gets (%d, %d, %d)" % (here, c, h, w))
            if open_blocks:
                raise ValueError("%s: softmax inside the residual block from %s" % (here, where(open_blocks[-1])))
            out = shape
        elif kind == "leaky_relu" and s["alpha"] == 0.0:
            # cnn.h's API reads alpha 0 as "the default, 0.3": refuse it rather than guess
            raise ValueError("%s: alpha=0 is ambiguous in cnn.h (0 means its default 0.3); "
                             "write relu for a slope of 0" % here)
        elif kind == "dropout" and not 0.0 < s["rate"] < 1.0:
            raise ValueError("%s: dropout rate must be between 0 and 1 (exclusive)" % here)
        else:
            out = shape
        layers.append(dict({"kind": kind, "settings": s, "in": shape, "out": out,
                            "flat": flat_from is not None, "params": params}, **extra))
        if kind in ("dense", "flatten"):
            flat_from = i
        shape = out
    if open_blocks and complete:
        raise ValueError("%s: residual_begin without its residual_end" % where(open_blocks[-1]))
    return input_shape, layers


def _module(layer):
    """The PyTorch module of one planned layer other than a residual block's
    begin and end (PyTorch's default init)."""
    kind, s, flat, c = layer["kind"], layer["settings"], layer["flat"], layer["in"][0]
    if kind == "conv2d":
        module = nn.Conv2d(c, s["units"], s["kernel"], s["stride"], s["padding"])
    elif kind == "dense":
        module = (nn.Linear if flat else FlattenLinear)(c, s["units"])
    elif kind in ("max_pool", "avg_pool"):
        pool = nn.MaxPool2d if kind == "max_pool" else nn.AvgPool2d
        module = pool(s["kernel"], s["stride"], s["padding"], ceil_mode=bool(s["ceil_mode"]))
    elif kind == "batch_norm":
        module = (nn.BatchNorm1d if flat else nn.BatchNorm2d)(c, eps=BATCH_NORM_EPS)
    elif kind == "global_avg_pool":
        module = nn.AdaptiveAvgPool2d(1)
    elif kind == "leaky_relu":
        module = nn.LeakyReLU(s["alpha"])
    elif kind == "dropout":
        module = nn.Dropout(s["rate"])
    else:
        module = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
                  "flatten": nn.Flatten, "softmax": lambda: nn.Softmax(dim=1)}[kind]()
    if "init" in s:
        module.cnnh_init = s["init"]  # kept for save(); PyTorch ignores it
    return module


def _modules(layers, begin=0, end=None):
    """The modules of layers[begin:end], a residual block (begin to its end)
    becoming one Residual."""
    modules, i = [], begin
    end = len(layers) if end is None else end
    while i < end:
        layer = layers[i]
        if layer["kind"] != "residual_begin":
            modules.append(_module(layer))
            i += 1
            continue
        last = layers[layer["end"]]
        shortcut = None
        if last["stride"]:
            shortcut = nn.Conv2d(layer["in"][0], last["out"][0], 1, last["stride"])
        block = Residual(nn.Sequential(*_modules(layers, i + 1, layer["end"])), shortcut)
        block.cnnh_init = last["settings"]["init"]  # kept for save()
        modules.append(block)
        i = layer["end"] + 1
    return modules


def build(metadata):
    """A freshly initialised (PyTorch's default init) torch.nn.Sequential of
    the layers that cnn.h metadata describes; the inverse of describe()."""
    _, layers = _plan(metadata)
    return nn.Sequential(*_modules(layers))


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def load(path):
    """The torch.nn.Sequential stored in a safetensors file written by cnn.h
    or by save(): built from its metadata, with its weights and running
    statistics (F32, F16 or BF16, converted to float32) and counts of
    batches, in eval mode; its cnnh_input_shape attribute is the (C, H, W)
    of the inputs it takes. Raises ValueError naming the file and the fault
    if the file is malformed, is not a cnn.h model, or its tensors are not
    those its layers need."""
    tensors, metadata = read_safetensors(path)
    try:
        input_shape, layers = _plan(metadata, where=lambda i: "cnn.h.layer.%d" % i)
    except ValueError as e:
        raise ValueError("%s: %s" % (path, e)) from None
    model = nn.Sequential(*_modules(layers))
    wanted = model.state_dict()  # its parameters and buffers, by name
    for name, tensor in tensors.items():
        if name not in wanted:
            raise ValueError("%s: tensor %r belongs to none of the layers in the metadata" % (path, name))
        if tuple(tensor.shape) != tuple(wanted[name].shape):
            raise ValueError("%s: tensor %r has shape %s, its layer needs %s"
                             % (path, name, tuple(tensor.shape), tuple(wanted[name].shape)))
        if wanted[name].dtype == torch.int64:
            if tensor.dtype != torch.int64:
                raise ValueError("%s: tensor %r is %s; a count of batches is I64" % (path, name, tensor.dtype))
            if int(tensor) < 0:
                raise ValueError("%s: tensor %r counts %d batches" % (path, name, int(tensor)))
        elif tensor.dtype not in _FLOATS:
            raise ValueError("%s: tensor %r is %s; cnn.h models hold F32, F16 or BF16" % (path, name, tensor.dtype))
        elif name.endswith("running_var") and bool((tensor < 0).any()):
            raise ValueError("%s: tensor %r holds a negative variance" % (path, name))
    missing = [name for name in wanted if name not in tensors and not name.endswith("num_batches_tracked")]
    if missing:
        raise ValueError("%s: the file lacks the tensor%s %s" % (path, "s" * (len(missing) > 1), ", ".join(missing)))
    with torch.no_grad():
        for name, value in wanted.items():  # these share the model's storage
            value.copy_(tensors[name].to(value.dtype) if name in tensors else torch.zeros((), dtype=value.dtype))
    model.cnnh_input_shape = input_shape
    return model.eval()


# ---------------------------------------------------------------- layers -> metadata

def _pair(value, what, index, module):
    """A square setting (int or (a, a)) as an int; refuses (a, b)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError("module %s (%s): %s %s is not square; cnn.h needs equal height and width"
                             % (index, module, what, tuple(value)))
        value = value[0]
    return value


_KNOWN = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Softmax,
          nn.LeakyReLU, nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, Residual)


def _layer_text(index, module, flat):
    """The cnn.h.layer.I text of one module (not a Residual), or ValueError
    saying why cnn.h cannot do what it does. index: the module's name in
    the Sequential ("3", "4.body.0"); flat: whether its input is (N, C)."""
    kind = type(module)

    def refuse(why):
        raise ValueError("module %s (%s): %s" % (index, module, why))

    def init():
        value = getattr(module, "cnnh_init", DEFAULT_INIT)
        if value not in INITS:
            refuse("cnnh_init %r is not one of %s" % (value, ", ".join(INITS)))
        return value

    if kind is nn.Conv2d:
        if isinstance(module.padding, str):
            refuse("padding=%r: give the padding as a number" % module.padding)
        k = _pair(module.kernel_size, "kernel", index, module)
        stride = _pair(module.stride, "stride", index, module)
        padding = _pair(module.padding, "padding", index, module)
        if _pair(module.dilation, "dilation", index, module) != 1:
            refuse("dilation must be 1")
        if module.groups != 1:
            refuse("groups must be 1")
        if module.bias is None:
            refuse("bias=False: cnn.h's conv2d always has a bias (give it a zero one)")
        if module.padding_mode != "zeros":
            refuse("padding_mode=%r: cnn.h pads with zeros only" % module.padding_mode)
        return "conv2d units=%d kernel=%d stride=%d padding=%d init=%s" % (
            module.out_channels, k, stride, padding, init())
    if kind in (nn.Linear, FlattenLinear):
        if kind is nn.Linear and not flat:
            refuse("Linear on an (N, C, H, W) tensor acts on its last dimension; add nn.Flatten() "
                   "before it, or use cnnh.FlattenLinear for a (C, 1, 1) input")
        if module.bias is None:
            refuse("bias=False: cnn.h's dense layer always has a bias (give it a zero one)")
        return "dense units=%d init=%s" % (module.out_features, init())
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        name = "max_pool" if kind is nn.MaxPool2d else "avg_pool"
        k = _pair(module.kernel_size, "kernel", index, module)
        stride = _pair(module.stride if module.stride is not None else k, "stride", index, module)
        padding = _pair(module.padding, "padding", index, module)
        if name == "max_pool":
            if _pair(module.dilation, "dilation", index, module) != 1:
                refuse("dilation must be 1")
            if module.return_indices:
                refuse("return_indices=True")
        else:
            if module.divisor_override is not None:
                refuse("divisor_override must be None")
            if padding and not module.count_include_pad:
                refuse("count_include_pad=False: cnn.h's average counts the padding")
        text = "%s kernel=%d stride=%d" % (name, k, stride)
        return text + (" padding=%d" % padding if padding else "") + (" ceil_mode=1" if module.ceil_mode else "")
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not module.affine or not module.track_running_stats:
            refuse("cnn.h's batch norm has a scale and shift (affine=True) and running statistics "
                   "(track_running_stats=True)")
        if module.eps != BATCH_NORM_EPS:
            refuse("eps=%g: cnn.h's batch norm adds %g" % (module.eps, BATCH_NORM_EPS))
        if kind is nn.BatchNorm2d and flat:
            refuse("BatchNorm2d on an (N, C) tensor: use nn.BatchNorm1d")
        if kind is nn.BatchNorm1d and not flat:
            refuse("BatchNorm1d on an (N, C, H, W) tensor: use nn.BatchNorm2d")
        return "batch_norm"
    if kind is nn.AdaptiveAvgPool2d:
        if _pair(module.output_size, "output_size", index, module) != 1:
            refuse("cnn.h's global average pooling is AdaptiveAvgPool2d(1)")
        return "global_avg_pool"
    if kind is nn.Flatten:
        if module.start_dim != 1 or module.end_dim != -1:
            refuse("cnn.h's flatten is Flatten(start_dim=1, end_dim=-1)")
        return "flatten"
    if kind is nn.Softmax:
        if module.dim not in (1, -1) or (module.dim == -1 and not flat):
            refuse("cnn.h's softmax is over the features of a flat input: Softmax(dim=1)")
        return "softmax"
    if kind is nn.LeakyReLU:
        alpha = _float32(module.negative_slope)
        if not math.isfinite(alpha) or alpha == 0.0:
            refuse("negative_slope must be finite and not 0 (use nn.ReLU for 0)")
        return "leaky_relu alpha=%s" % format_float32(alpha)
    if kind is nn.Dropout:
        if not 0.0 < module.p < 1.0:
            refuse("cnn.h's dropout rate must be between 0 and 1 (exclusive)")
        return "dropout rate=%s" % format_float32(module.p)
    simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
    if kind in simple:
        return simple[kind]
    refuse("%s is not a layer cnn.h has (%s)" % (
        kind.__name__, "its forward may differ from its base class's" if isinstance(module, _KNOWN)
        else "Conv2d, Linear, ReLU, LeakyReLU, Sigmoid, Tanh, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, "
             "Dropout, Softmax, BatchNorm2d, BatchNorm1d, cnnh.Residual"))


def _walk(sequential, prefix=""):
    """The cnn.h layers of a Sequential, in cnn.h's order, as (name, module,
    role): role "begin" and "end" for a Residual (the end holds its
    shortcut), None for a module that is one layer."""
    for i, module in enumerate(sequential):
        name = prefix + str(i)
        if type(module) is not Residual:
            yield name, module, None
            continue
        if type(module.body) is not nn.Sequential or len(module.body) == 0:
            raise ValueError("module %s (Residual): its body must be a non-empty nn.Sequential" % name)
        if type(module.shortcut) not in (nn.Identity, nn.Conv2d):
            raise ValueError("module %s (Residual): its shortcut must be nn.Identity() or a 1x1 nn.Conv2d, not %s"
                             % (name, type(module.shortcut).__name__))
        yield name, module, "begin"
        yield from _walk(module.body, name + ".body.")
        yield name, module, "end"


def _shortcut_text(name, block, layer):
    """The residual_end text of a Residual, checked against the layer _plan
    made of it (its input and output shapes, its stride)."""
    shortcut = block.shortcut
    where = "module %s (Residual)" % name
    if layer["stride"] and type(shortcut) is nn.Identity:
        raise ValueError("%s: its body turns %s into %s, so cnn.h projects its input: the shortcut must be "
                         "nn.Conv2d(%d, %d, 1, stride=%d), not nn.Identity()"
                         % (where, layer["x"], layer["out"], layer["x"][0], layer["out"][0], layer["stride"]))
    if not layer["stride"] and type(shortcut) is not nn.Identity:
        raise ValueError("%s: its body keeps the shape %s, so cnn.h adds the input itself: the shortcut must be "
                         "nn.Identity()" % (where, layer["out"]))
    if layer["stride"]:
        conv = "module %s.shortcut (%s)" % (name, shortcut)
        if (_pair(shortcut.kernel_size, "kernel", name + ".shortcut", shortcut) != 1
                or _pair(shortcut.stride, "stride", name + ".shortcut", shortcut) != layer["stride"]
                or isinstance(shortcut.padding, str) or _pair(shortcut.padding, "padding", name, shortcut) != 0
                or _pair(shortcut.dilation, "dilation", name, shortcut) != 1 or shortcut.groups != 1
                or shortcut.padding_mode != "zeros"):
            raise ValueError("%s: cnn.h's projection is nn.Conv2d(%d, %d, 1, stride=%d), no padding, dilation or groups"
                             % (conv, layer["x"][0], layer["out"][0], layer["stride"]))
        if shortcut.bias is None:
            raise ValueError("%s: bias=False: cnn.h's projection always has a bias (give it a zero one)" % conv)
    return layer


def describe(module, input_shape):
    """The cnn.h metadata (a dict of str -> str) of a torch.nn.Sequential for
    inputs of shape input_shape = (C, H, W); ValueError naming the module
    (by its name in the Sequential: "3", "4.body.0") if cnn.h cannot hold
    it."""
    if not isinstance(module, nn.Sequential):
        raise ValueError("cnn.h models are torch.nn.Sequential, not %s" % type(module).__name__)
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(s, int) and s > 0 for s in input_shape)):
        raise ValueError("input_shape must be (C, H, W), three positive integers, not %r" % (input_shape,))
    if len(module) == 0:
        raise ValueError("the Sequential is empty")
    entries = list(_walk(module))

    def where(j):
        name, layer, role = entries[j]
        return "module %s (%s)" % (name, "Residual" if role else layer)

    metadata = {"format": "pt", "cnn.h.version": SCHEMA_VERSION,
                "cnn.h.input": "%d,%d,%d" % tuple(input_shape), "cnn.h.layers": str(len(entries))}
    flat_from = None  # the entry of the Linear or Flatten that made the input (N, features)
    for j, (name, layer, role) in enumerate(entries):
        if flat_from is not None and type(layer) in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d) \
                and not role:
            # as cnn.h says it, with the size of the flat vector (the layers
            # before this one are all known to be cnn.h layers by now)
            _, before = _plan(dict(metadata, **{"cnn.h.layers": str(j)}), where=where, complete=False)
            raise ValueError("module %s (%s): %s needs an image (N, C, H, W), but module %s (%s) made its input "
                             "a flat vector of %d: put Conv2d and pool layers before Flatten and Linear"
                             % (name, layer, type(layer).__name__, entries[flat_from][0],
                                type(entries[flat_from][1]).__name__, before[-1]["out"][0]))
        if role == "begin":
            metadata["cnn.h.layer.%d" % j] = "residual_begin"
        elif role == "end":
            init = getattr(layer, "cnnh_init", DEFAULT_INIT)
            if init not in INITS:
                raise ValueError("module %s (Residual): cnnh_init %r is not one of %s" % (name, init, ", ".join(INITS)))
            metadata["cnn.h.layer.%d" % j] = "residual_end init=%s" % init
        else:
            metadata["cnn.h.layer.%d" % j] = _layer_text(name, layer, flat_from is not None)
        if type(layer) in (nn.Linear, FlattenLinear, nn.Flatten):
            flat_from = j
    _, layers = _plan(metadata, where=where)
    for j, layer in enumerate(layers):
        name, owner, role = entries[j]
        if role == "end":
            layer["x"] = layers[layer["begin"]]["in"]
            _shortcut_text(name, owner, layer)
            owner, name = owner.shortcut, name + ".shortcut"
        for part, shape in layer["params"].items():
            got = tuple(getattr(owner, part).shape)
            if got != shape:
                raise ValueError("module %s (%s): %s has shape %s, but its input %s needs %s"
                                 % (name, owner, part, got, layer["in"] if role != "end" else layer["x"], shape))
    return metadata


def save(module, path, input_shape, dtype="F32"):
    """Writes a torch.nn.Sequential of layers cnn.h has to a safetensors file
    that cnn.h (and load()) can read: its weights and running statistics in
    dtype (F32, F16 or BF16), its counts of batches as I64, and the
    metadata describing its layers for inputs of shape input_shape = (C,
    H, W). Raises ValueError naming the module and what cnn.h lacks (a
    non-square kernel, dilation, groups, no bias, ...). The init= written
    for conv2d and dense layers and residual blocks is the module's
    cnnh_init attribute (load() sets it from the file), else
    glorot_uniform."""
    metadata = describe(module, input_shape)
    # describe() has checked every module: the state_dict holds exactly the
    # tensors cnn.h names, in its order
    write_safetensors(path, dict(module.state_dict()), metadata, dtype)
