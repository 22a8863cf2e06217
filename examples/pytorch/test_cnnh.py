#!/usr/bin/python3
"""Tests of cnnh.py on its own (no C): save -> load gives the same outputs,
F16 and BF16 are read and written bit-exactly, the files are byte for byte
those of the reference writer, and every malformed file and unsupported
module is refused with a message that says what and where.

    /usr/bin/python3 examples/pytorch/test_cnnh.py [-v]
"""
import json
import os
import struct
import sys
import tempfile
import unittest

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnnh  # noqa: E402

torch.set_num_threads(1)


def header_file(header, data=b"", pad=True):
    """The bytes of a file with this header (a dict, or raw JSON text) and data."""
    text = header if isinstance(header, (bytes, str)) else json.dumps(header, separators=(",", ":"))
    text = text.encode("utf-8") if isinstance(text, str) else text
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


class Files(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.TemporaryDirectory()
        self.addCleanup(self.folder.cleanup)

    def path(self, name="model.safetensors"):
        return os.path.join(self.folder.name, name)

    def write(self, raw, name="bad.safetensors"):
        with open(self.path(name), "wb") as f:
            f.write(raw)
        return self.path(name)

    def refused(self, function, *args, says):
        with self.assertRaises(ValueError) as caught:
            function(*args)
        for text in [says] if isinstance(says, str) else says:
            self.assertIn(text, str(caught.exception))
        return str(caught.exception)


class ReferenceBytes(Files):
    """The reference implementation's own serialisation tests, byte for byte."""

    def check(self, tensors, metadata, expected_json, data):
        cnnh.write_safetensors(self.path(), tensors, metadata)
        with open(self.path(), "rb") as f:
            self.assertEqual(f.read(), header_file(expected_json) + data)

    def test_one_tensor(self):
        values = torch.arange(6, dtype=torch.float32)
        data = struct.pack("<6f", *range(6))
        self.check({"attn.0": values.reshape(1, 2, 3)}, None,
                   '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', data)
        self.check({"attn0": values.reshape(1, 1, 2, 3)}, None,   # 7 spaces of padding
                   '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}', data)

    def test_empty(self):
        self.check({}, None, "{}", b"")
        self.check({}, {"framework": "pt"}, '{"__metadata__":{"framework":"pt"}}', b"")
        self.assertEqual(cnnh.read_safetensors(self.path()), ({}, {"framework": "pt"}))


class RoundTrips(Files):
    def every_layer(self):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(4, 6, 3), nn.LeakyReLU(0.1), nn.AvgPool2d(2, 2), nn.Tanh(), nn.Flatten(),
            nn.Linear(24, 16), nn.Sigmoid(), nn.Dropout(0.25), nn.Linear(16, 7), nn.Softmax(dim=1))

    def test_save_load_same_outputs(self):
        model = self.every_layer().eval()
        x = torch.rand(5, 3, 12, 12)
        cnnh.save(model, self.path(), (3, 12, 12))
        again = cnnh.load(self.path())
        self.assertFalse(again.training)
        self.assertEqual(again.cnnh_input_shape, (3, 12, 12))
        self.assertEqual([type(m) for m in again], [type(m) for m in model])
        self.assertEqual(list(again.state_dict()), list(model.state_dict()))
        self.assertTrue(torch.equal(again(x), model(x)))
        self.assertEqual(again[4].negative_slope, struct.unpack("<f", struct.pack("<f", 0.1))[0])
        self.assertEqual(again[10].p, struct.unpack("<f", struct.pack("<f", 0.25))[0])

    def test_metadata(self):
        metadata = cnnh.describe(self.every_layer(), (3, 12, 12))
        self.assertEqual(metadata["format"], "pt")
        self.assertEqual(metadata["cnn.h.version"], "1")
        self.assertEqual(metadata["cnn.h.input"], "3,12,12")
        self.assertEqual(metadata["cnn.h.layers"], "13")
        self.assertEqual(metadata["cnn.h.layer.0"], "conv2d units=4 kernel=3 stride=1 padding=1 init=glorot_uniform")
        self.assertEqual(metadata["cnn.h.layer.2"], "max_pool kernel=2 stride=2")
        self.assertEqual(metadata["cnn.h.layer.4"], "leaky_relu alpha=0.1")
        self.assertEqual(metadata["cnn.h.layer.5"], "avg_pool kernel=2 stride=2")
        self.assertEqual(metadata["cnn.h.layer.7"], "flatten")
        self.assertEqual(metadata["cnn.h.layer.8"], "dense units=16 init=glorot_uniform")
        self.assertEqual(metadata["cnn.h.layer.10"], "dropout rate=0.25")
        self.assertEqual(metadata["cnn.h.layer.12"], "softmax")
        self.assertEqual(cnnh.describe(cnnh.build(metadata), (3, 12, 12)), metadata)

    def test_file_layout(self):
        """Keys sorted by name ("11.weight" before "3.weight"), data in module
        order, contiguous from 0, header padded to 8."""
        cnnh.save(self.every_layer(), self.path(), (3, 12, 12))
        with open(self.path(), "rb") as f:
            raw = f.read()
        (n,) = struct.unpack_from("<Q", raw)
        self.assertEqual((8 + n) % 8, 0)
        header = json.loads(raw[8:8 + n])
        self.assertEqual(list(header), ["__metadata__", "0.bias", "0.weight", "11.bias", "11.weight",
                                        "3.bias", "3.weight", "8.bias", "8.weight"])
        by_offset = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
        self.assertEqual([k for _, k in by_offset], ["0.weight", "0.bias", "3.weight", "3.bias",
                                                     "8.weight", "8.bias", "11.weight", "11.bias"])
        self.assertEqual(by_offset[0][0][0], 0)
        self.assertEqual(by_offset[-1][0][1], len(raw) - 8 - n)

    def test_half_precision(self):
        model = self.every_layer().eval()
        x = torch.rand(2, 3, 12, 12)
        for dtype, torch_type, one in (("F16", torch.float16, 0x3C00), ("BF16", torch.bfloat16, 0x3F80)):
            cnnh.save(model, self.path(), (3, 12, 12), dtype)
            tensors, _ = cnnh.read_safetensors(self.path())
            self.assertTrue(all(t.dtype == torch_type for t in tensors.values()))
            self.assertTrue(torch.equal(tensors["0.weight"], model[0].weight.detach().to(torch_type)))
            rounded = self.every_layer().eval()
            with torch.no_grad():
                for p in rounded.parameters():
                    p.copy_(p.to(torch_type).float())
            self.assertTrue(torch.equal(cnnh.load(self.path())(x), rounded(x)))
            cnnh.write_safetensors(self.path(), {"one": torch.tensor([1.0, -2.0])}, None, dtype)
            with open(self.path(), "rb") as f:
                raw = f.read()
            self.assertEqual(struct.unpack("<2H", raw[-4:]), (one, one + 0x8000 + (0x400 if dtype == "F16" else 0x80)))
            self.assertTrue(torch.equal(cnnh.read_safetensors(self.path())[0]["one"].float(),
                                        torch.tensor([1.0, -2.0])))

    def test_dense_on_conv_output(self):
        """A dense layer straight on a (C, 1, 1) conv output, with no flatten,
        as cnn.h allows: a FlattenLinear, with a plain nn.Linear after it."""
        metadata = {"cnn.h.version": "1", "cnn.h.input": "2,9,9", "cnn.h.layers": "6",
                    "cnn.h.layer.0": "conv2d units=3 kernel=3 stride=2 padding=1 init=he_normal",
                    "cnn.h.layer.1": "conv2d units=4 kernel=5 stride=1 padding=0 init=he_uniform",
                    "cnn.h.layer.2": "dense units=6 init=glorot_uniform",
                    "cnn.h.layer.3": "relu",
                    "cnn.h.layer.4": "dense units=3 init=glorot_uniform",
                    "cnn.h.layer.5": "softmax"}
        model = cnnh.build(metadata).eval()
        self.assertEqual([type(m).__name__ for m in model],
                         ["Conv2d", "Conv2d", "FlattenLinear", "ReLU", "Linear", "Softmax"])
        self.assertEqual(cnnh.describe(model, (2, 9, 9)), dict(metadata, format="pt"))
        x = torch.rand(3, 2, 9, 9)
        # the same computation by hand
        h = model[1](model[0](x)).flatten(1)
        h = torch.relu(h @ model[2].weight.t() + model[2].bias)
        h = h @ model[4].weight.t() + model[4].bias
        self.assertTrue(torch.allclose(model(x), torch.softmax(h, 1), atol=1e-6))
        cnnh.save(model, self.path(), (2, 9, 9))
        self.assertTrue(torch.equal(cnnh.load(self.path())(x), model(x)))

    def test_image_layer_after_flat(self):
        """A conv or pool after a dense or flatten layer (element-wise layers
        between or not) is refused, as cnn.h refuses it, naming both layers."""
        base = {"cnn.h.version": "1", "cnn.h.input": "2,9,9",
                "cnn.h.layer.0": "conv2d units=4 kernel=9 stride=1 padding=0 init=glorot_uniform"}
        tail = {"conv2d": "conv2d units=5 kernel=1 stride=1 padding=0 init=glorot_uniform",
                "max_pool": "max_pool kernel=1 stride=1", "avg_pool": "avg_pool kernel=1 stride=1"}
        for kind, text in tail.items():
            for flat, between, size in (("dense units=6 init=glorot_uniform", [], 6),
                                        ("flatten", ["relu", "dropout rate=0.5", "tanh"], 4)):
                layers = ["conv2d units=4 kernel=9 stride=1 padding=0 init=glorot_uniform", flat] + between + [text]
                metadata = dict(base, **{"cnn.h.layers": str(len(layers))},
                                **{"cnn.h.layer.%d" % i: t for i, t in enumerate(layers)})
                last = len(layers) - 1
                with self.assertRaises(ValueError) as caught:
                    cnnh.build(metadata)
                self.assertEqual(str(caught.exception),
                                 "layer %d (%r): %s needs an image (channels, height, width), but layer 1 (%s) "
                                 "made its input a flat vector of %d: put conv and pool layers before flatten "
                                 "and dense" % (last, text, kind, flat.split()[0], size))
                # the same layers are fine with the conv or pool first
                layers[1], layers[-1] = layers[-1], layers[1]
                cnnh.build(dict(metadata, **{"cnn.h.layer.%d" % i: t for i, t in enumerate(layers)}))

    def test_format_float32(self):
        for value, text in ((0.3, "0.3"), (0.1, "0.1"), (0.25, "0.25"), (1.0, "1"), (1e-5, "1e-05"),
                            (0.2, "0.2"), (1 / 3, "0.33333334")):
            self.assertEqual(cnnh.format_float32(value), text)
        torch.manual_seed(0)
        for value in (torch.randn(2000) * 10.0 ** torch.randint(-30, 30, (2000,))).tolist():
            value = struct.unpack("<f", struct.pack("<f", value))[0]
            text = cnnh.format_float32(value)
            self.assertEqual(struct.unpack("<f", struct.pack("<f", float(text)))[0], value)
            digits = len(text.split("e")[0].replace("-", "").replace(".", "").lstrip("0"))
            self.assertLessEqual(digits, 9)

    def test_read_order_and_zero_size(self):
        """Offsets in any key order, and empty tensors (which take no bytes)."""
        data = struct.pack("<3f", 1, 2, 3)
        raw = header_file('{"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},'
                          '"e":{"shape":[0,3],"data_offsets":[4,4],"dtype":"F16"},'
                          '"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', data)
        tensors, metadata = cnnh.read_safetensors(self.write(raw))
        self.assertEqual(list(tensors), ["a", "e", "b"])
        self.assertEqual(tensors["a"].tolist(), 1.0)
        self.assertEqual(tensors["b"].tolist(), [2.0, 3.0])
        self.assertEqual(tuple(tensors["e"].shape), (0, 3))
        self.assertEqual(metadata, {})


class BatchNormAndResidual(Files):
    """Batch norm (its statistics and count of batches), global average
    pooling, padded pools in ceil mode and residual blocks (Residual:
    identity and projection shortcuts, one inside another)."""
    # as cnn.h writes tests/test.h's test_add_residual_layers
    METADATA = {
        "format": "pt", "cnn.h.version": "1", "cnn.h.input": "3,9,9", "cnn.h.layers": "26",
        "cnn.h.layer.0": "conv2d units=4 kernel=3 stride=1 padding=1 init=he_normal", "cnn.h.layer.1": "batch_norm",
        "cnn.h.layer.2": "relu", "cnn.h.layer.3": "max_pool kernel=3 stride=2 padding=1 ceil_mode=1",
        "cnn.h.layer.4": "residual_begin",
        "cnn.h.layer.5": "conv2d units=4 kernel=3 stride=1 padding=1 init=glorot_uniform", "cnn.h.layer.6": "batch_norm",
        "cnn.h.layer.7": "relu", "cnn.h.layer.8": "conv2d units=4 kernel=3 stride=1 padding=1 init=glorot_uniform",
        "cnn.h.layer.9": "batch_norm", "cnn.h.layer.10": "residual_end init=glorot_uniform", "cnn.h.layer.11": "relu",
        "cnn.h.layer.12": "residual_begin",
        "cnn.h.layer.13": "conv2d units=6 kernel=3 stride=2 padding=1 init=glorot_uniform", "cnn.h.layer.14": "batch_norm",
        "cnn.h.layer.15": "residual_begin", "cnn.h.layer.16": "leaky_relu alpha=0.1",
        "cnn.h.layer.17": "residual_end init=glorot_uniform", "cnn.h.layer.18": "residual_end init=he_normal",
        "cnn.h.layer.19": "avg_pool kernel=2 stride=2 padding=1 ceil_mode=1", "cnn.h.layer.20": "global_avg_pool",
        "cnn.h.layer.21": "dense units=5 init=glorot_uniform", "cnn.h.layer.22": "batch_norm", "cnn.h.layer.23": "relu",
        "cnn.h.layer.24": "dense units=4 init=glorot_uniform", "cnn.h.layer.25": "softmax"}

    def model(self):
        """The same model as PyTorch would write it, with statistics of its own."""
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
            cnnh.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))),
            nn.ReLU(),
            cnnh.Residual(nn.Sequential(nn.Conv2d(4, 6, 3, 2, 1), nn.BatchNorm2d(6),
                                        cnnh.Residual(nn.Sequential(nn.LeakyReLU(0.1)))),
                          nn.Conv2d(4, 6, 1, 2)),
            nn.AvgPool2d(2, 2, 1, ceil_mode=True), nn.AdaptiveAvgPool2d(1), cnnh.FlattenLinear(6, 5),
            nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 4), nn.Softmax(dim=1))
        model[0].cnnh_init = "he_normal"
        model[6].cnnh_init = "he_normal"
        model.train()
        for _ in range(3):  # statistics and counts of its own
            model(torch.rand(8, 3, 9, 9))
        return model.eval()

    def test_describe_and_build(self):
        model = self.model()
        self.assertEqual(cnnh.describe(model, (3, 9, 9)), self.METADATA)
        built = cnnh.build(self.METADATA)
        self.assertEqual(cnnh.describe(built, (3, 9, 9)), self.METADATA)
        self.assertEqual([(k, tuple(v.shape)) for k, v in built.state_dict().items()],
                         [(k, tuple(v.shape)) for k, v in model.state_dict().items()])
        self.assertEqual([type(m) for m in built.modules()], [type(m) for m in model.modules()])

    def test_save_load_same_outputs(self):
        model = self.model()
        x = torch.rand(5, 3, 9, 9)
        cnnh.save(model, self.path(), (3, 9, 9))
        tensors, metadata = cnnh.read_safetensors(self.path())
        self.assertEqual(metadata, self.METADATA)
        self.assertEqual(list(tensors), list(model.state_dict()))  # the data in module order
        for name in ("1.num_batches_tracked", "4.body.1.num_batches_tracked", "10.num_batches_tracked"):
            self.assertEqual((tensors[name].dtype, tuple(tensors[name].shape), int(tensors[name])), (torch.int64, (), 3))
        for name in ("4.body.3.weight", "6.body.1.running_var", "6.shortcut.weight", "6.shortcut.bias", "9.weight"):
            self.assertTrue(torch.equal(tensors[name], model.state_dict()[name]), name)
        again = cnnh.load(self.path())
        self.assertFalse(again.training)
        self.assertEqual(again[6].cnnh_init, "he_normal")
        self.assertTrue(all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values())))
        self.assertTrue(torch.equal(again(x), model(x)))
        # the count of batches may be missing: 0, as PyTorch's load_state_dict counts it
        del tensors["1.num_batches_tracked"]
        cnnh.write_safetensors(self.path(), tensors, metadata)
        self.assertEqual(int(cnnh.load(self.path())[1].num_batches_tracked), 0)

    def test_flat_bodies(self):
        """A body that makes its input flat: the shortcut is flattened to match."""
        model = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            cnnh.Residual(nn.Sequential(nn.Flatten(), nn.Linear(3, 5), nn.ReLU()), nn.Conv2d(3, 5, 1)),
            cnnh.Residual(nn.Sequential(nn.Linear(5, 5), nn.BatchNorm1d(5))),
            cnnh.Residual(nn.Sequential(nn.Linear(5, 2)), nn.Conv2d(5, 2, 1)),  # a projection of a flat input
            nn.Softmax(dim=1)).eval()
        x = torch.rand(4, 3, 2, 2)
        pooled = x.mean((2, 3))
        h = torch.relu(model[1].body[1](pooled)) + model[1].shortcut(pooled[:, :, None, None]).flatten(1)
        h = model[2].body(h) + h
        h = model[3].body(h) + model[3].shortcut(h[:, :, None, None]).flatten(1)
        self.assertTrue(torch.allclose(model(x), torch.softmax(h, 1), atol=1e-6))
        cnnh.save(model, self.path(), (3, 2, 2))
        self.assertTrue(torch.equal(cnnh.load(self.path())(x), model(x)))

    def test_refused_models(self):
        def refused(layers, says, shape=(2, 8, 8)):
            with self.assertRaises(ValueError) as caught:
                cnnh.save(nn.Sequential(*layers), self.path(), shape)
            for text in [says] if isinstance(says, str) else says:
                self.assertIn(text, str(caught.exception))

        refused([nn.Conv2d(2, 4, 3), cnnh.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, 2)))],
                ["module 1 (Residual): its body turns (4, 6, 6) into (4, 2, 2)",
                 "the shortcut must be nn.Conv2d(4, 4, 1, stride=3), not nn.Identity()"])
        refused([cnnh.Residual(nn.Sequential(nn.ReLU()), nn.Conv2d(2, 2, 1))],
                "module 0 (Residual): its body keeps the shape (2, 8, 8), so cnn.h adds the input itself")
        refused([cnnh.Residual(nn.Sequential(nn.Conv2d(2, 3, 3, 2, 1)), nn.Conv2d(2, 3, 1, 1))],
                ["module 0.shortcut (Conv2d(", "cnn.h's projection is nn.Conv2d(2, 3, 1, stride=2)"])
        refused([cnnh.Residual(nn.Sequential(nn.Conv2d(2, 3, 3, 2, 1)), nn.Conv2d(2, 3, 1, 2, bias=False))],
                "bias=False: cnn.h's projection always has a bias")
        refused([cnnh.Residual(nn.Sequential(nn.Conv2d(2, 3, 3, 2, 1)), nn.Conv2d(4, 3, 1, 2))],
                "module 0.shortcut (Conv2d(4, 3, kernel_size=(1, 1), stride=(2, 2))): weight has shape (3, 4, 1, 1), "
                "but its input (2, 8, 8) needs (3, 2, 1, 1)")
        refused([cnnh.Residual(nn.Sequential(nn.Conv2d(2, 3, 3)))], "no 1x1 convolution with a stride maps")
        refused([cnnh.Residual(nn.Sequential())], "module 0 (Residual): its body must be a non-empty nn.Sequential")
        refused([cnnh.Residual(nn.Sequential(nn.ReLU()), nn.ReLU())], "its shortcut must be nn.Identity() or a 1x1")
        refused([cnnh.Residual(nn.Sequential(nn.Flatten(), nn.Softmax(dim=1)))], "softmax inside the residual block")
        refused([nn.ReLU(), cnnh.Residual(nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 3, padding=(0, 1))))],
                "module 1.body.1 (Conv2d(")
        refused([nn.Flatten(), cnnh.Residual(nn.Sequential(nn.Linear(128, 128))), nn.AdaptiveAvgPool2d(1)],
                ["module 2 (AdaptiveAvgPool2d(output_size=1)): AdaptiveAvgPool2d needs an image",
                 "but module 1.body.0 (Linear) made its input a flat vector of 128"])
        refused([nn.AdaptiveAvgPool2d(2)], "AdaptiveAvgPool2d(1)")
        refused([nn.BatchNorm2d(2, eps=1e-3)], "eps=0.001: cnn.h's batch norm adds 1e-05")
        refused([nn.BatchNorm2d(2, affine=False)], "affine=True")
        refused([nn.BatchNorm2d(2, track_running_stats=False)], "track_running_stats=True")
        refused([nn.Flatten(), nn.BatchNorm2d(128)], "BatchNorm2d on an (N, C) tensor: use nn.BatchNorm1d")
        refused([nn.BatchNorm1d(2)], "BatchNorm1d on an (N, C, H, W) tensor")
        refused([nn.BatchNorm2d(3)], "module 0 (BatchNorm2d(3,", shape=(2, 8, 8))

    def test_refused_files(self):
        model = self.model()
        tensors, metadata = dict(model.state_dict()), dict(self.METADATA)

        def refused(says, tensors, metadata=metadata):
            cnnh.write_safetensors(self.path(), tensors, metadata)
            with self.assertRaises(ValueError) as caught:
                cnnh.load(self.path())
            self.assertIn(says, str(caught.exception))

        refused("tensor '1.running_var' holds a negative variance", dict(tensors, **{"1.running_var": -torch.ones(4)}))
        refused("tensor '1.num_batches_tracked' counts -1 batches",
                dict(tensors, **{"1.num_batches_tracked": torch.tensor(-1)}))
        refused("tensor '1.num_batches_tracked' is torch.float32; a count of batches is I64",
                dict(tensors, **{"1.num_batches_tracked": torch.tensor(3.0)}))
        refused("tensor '1.num_batches_tracked' has shape (1,), its layer needs ()",
                dict(tensors, **{"1.num_batches_tracked": torch.tensor([3])}))
        refused("the file lacks the tensor 6.shortcut.bias", {k: v for k, v in tensors.items() if k != "6.shortcut.bias"})
        refused("tensor '4.shortcut.weight' belongs to none of the layers",
                dict(tensors, **{"4.shortcut.weight": torch.ones(4, 4, 1, 1)}))
        refused("cnn.h.layer.19 ('residual_end init=he_normal'): residual_end without a residual_begin",
                tensors, dict(metadata, **{"cnn.h.layer.19": "residual_end init=he_normal"}))
        refused("cnn.h.layer.25 ('softmax'): softmax inside the residual block from cnn.h.layer.4",
                tensors, dict(metadata, **{"cnn.h.layer.10": "relu"}))
        refused("cnn.h.layer.1: residual_begin without its residual_end", {},
                {"cnn.h.version": "1", "cnn.h.input": "1,2,2", "cnn.h.layers": "3", "cnn.h.layer.0": "relu",
                 "cnn.h.layer.1": "residual_begin", "cnn.h.layer.2": "relu"})
        refused("cnn.h.layer.16 ('residual_end init=glorot_uniform'): the residual block from cnn.h.layer.15 has no layers",
                tensors, dict(metadata, **{"cnn.h.layer.16": "residual_end init=glorot_uniform", "cnn.h.layer.17": "relu"}))


class MalformedFiles(Files):
    F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    DATA = struct.pack("<2f", 1, 2)

    def bad(self, raw, says):
        return self.refused(cnnh.read_safetensors, self.write(raw), says=says)

    def entry(self, **change):
        return header_file({"t": dict(self.F32, **change)}, self.DATA)

    def test_header_length(self):
        self.bad(b"\x10\x00\x00", "too short")
        self.bad(struct.pack("<Q", 2**63) + b"{}", "not between 2 and")
        self.bad(struct.pack("<Q", 1000) + b"{}      ", "runs past the end of the file")
        self.bad(struct.pack("<Q", 0), "not between")

    def test_header_text(self):
        self.bad(header_file(b'{"\xff":1}'), "not UTF-8 (byte 10)")
        self.bad(header_file(b' {}'), "does not start with '{'")
        self.bad(header_file(b'{"t":'), "not valid JSON")
        self.bad(header_file(b'{}\x00\x00'), "padding may only be trailing spaces")
        self.bad(header_file(b'[1]'), "does not start with '{'")
        self.bad(header_file('{"t":%s,"t":%s}' % (json.dumps(self.F32), json.dumps(self.F32)), self.DATA),
                 "the key 't' twice")
        self.bad(header_file('{"t":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}', self.DATA),
                 "holds NaN")

    def test_metadata(self):
        self.bad(header_file({"__metadata__": {"a": 1}}), "__metadata__ must be an object of strings")
        self.bad(header_file({"__metadata__": "x"}), "__metadata__ must be an object of strings")

    def test_entries(self):
        self.bad(header_file({"t": 3}), "tensor 't': not an object")
        self.bad(header_file({"t": {"dtype": "F32", "shape": [2]}}, self.DATA), "wants dtype, shape, data_offsets")
        self.bad(self.entry(dtype="F128"), "unknown dtype 'F128'")
        self.bad(self.entry(dtype="float32"), "unknown dtype 'float32'")
        self.bad(self.entry(shape=[-2]), "shape [-2] is not a list of non-negative integers")
        self.bad(self.entry(shape=[2.0]), "not a list of non-negative integers")
        self.bad(self.entry(shape=[True, 2]), "not a list of non-negative integers")
        self.bad(self.entry(shape=2), "not a list of non-negative integers")
        self.bad(self.entry(data_offsets=[8, 0]), "is not [begin, end]")
        self.bad(self.entry(data_offsets=[0]), "is not [begin, end]")
        self.bad(self.entry(shape=[3]), "hold 8 bytes, but F32 [3] needs 12")
        self.bad(self.entry(dtype="F16"), "hold 8 bytes, but F16 [2] needs 4")

    def test_tiling(self):
        one = {"dtype": "F32", "shape": [1]}
        self.bad(header_file({"a": dict(one, data_offsets=[0, 4]), "b": dict(one, data_offsets=[8, 12])},
                             bytes(12)), "tensor 'b' begins at data byte 8, but the tensors before it end at 4 (a gap)")
        self.bad(header_file({"a": dict(one, data_offsets=[0, 4]), "b": dict(one, data_offsets=[2, 6])},
                             bytes(6)), "(an overlap)")
        self.bad(header_file({"a": dict(one, data_offsets=[4, 8])}, bytes(8)), "begins at data byte 4")
        self.bad(self.entry()[:-1], "the tensors end at data byte 8, but the data section holds 7 bytes")
        self.bad(self.entry() + b"\x00", "holds 9 bytes")

    def test_dtype_torch_lacks(self):
        self.bad(header_file({"t": {"dtype": "U16", "shape": [4], "data_offsets": [0, 8]}}, self.DATA),
                 "tensor 't' is U16")

    def test_other_dtypes_read(self):
        raw = header_file({"i": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]},
                           "d": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}},
                          struct.pack("<qd", -5, 0.5))
        tensors, _ = cnnh.read_safetensors(self.write(raw))
        self.assertEqual((tensors["i"].item(), tensors["d"].item()), (-5, 0.5))
        self.assertEqual((tensors["i"].dtype, tensors["d"].dtype), (torch.int64, torch.float64))


class BadModels(Files):
    """Files that are valid safetensors but not valid cnn.h models."""
    BASE = {"format": "pt", "cnn.h.version": "1", "cnn.h.input": "1,4,4", "cnn.h.layers": "3",
            "cnn.h.layer.0": "conv2d units=2 kernel=3 stride=1 padding=1 init=glorot_uniform",
            "cnn.h.layer.1": "flatten", "cnn.h.layer.2": "dense units=3 init=he_normal"}

    def tensors(self):
        torch.manual_seed(0)
        return {"0.weight": torch.randn(2, 1, 3, 3), "0.bias": torch.randn(2),
                "2.weight": torch.randn(3, 32), "2.bias": torch.randn(3)}

    def bad(self, says, tensors=None, drop=(), **change):
        metadata = dict(self.BASE)
        for key in drop:
            del metadata[key]
        metadata.update({"cnn.h." + key[len("cnnh_"):].replace("_", "."): value for key, value in change.items()})
        cnnh.write_safetensors(self.path(), self.tensors() if tensors is None else tensors, metadata)
        message = self.refused(cnnh.load, self.path(), says=says)
        self.assertTrue(message.startswith(self.path() + ": "), message)

    def test_good(self):
        cnnh.write_safetensors(self.path(), self.tensors(), self.BASE)
        model = cnnh.load(self.path())
        self.assertEqual(model[2].cnnh_init, "he_normal")
        self.assertEqual(cnnh.describe(model, (1, 4, 4)), self.BASE)
        # unknown metadata keys are ignored; settings may come in any order
        cnnh.write_safetensors(self.path(), self.tensors(), dict(
            self.BASE, **{"other": "x", "cnn.h.layer.0": "conv2d init=glorot_uniform padding=1 stride=1 kernel=3 units=2"}))
        cnnh.load(self.path())

    def test_metadata(self):
        cnnh.write_safetensors(self.path(), self.tensors(), None)
        self.refused(cnnh.load, self.path(), says="no cnn.h metadata")
        self.bad("cnn.h.version is '2'; this reader knows version 1", cnnh_version="2")
        self.bad("no 'cnn.h.input'", drop=["cnn.h.input"])
        for value in ("1,4", "1,4,4,1", "0,4,4", "1,-4,4", "1, 4,4", "a,b,c"):
            self.bad("cnn.h.input is %r, not C,H,W" % value, cnnh_input=value)
        self.bad("cnn.h.layers is '0'", cnnh_layers="0")
        self.bad("cnn.h.layers is 'three'", cnnh_layers="three")
        self.bad("no 'cnn.h.layer.3'", cnnh_layers="4")
        self.bad("'cnn.h.layer.3' does not name one of the 3 layers", **{"cnnh_layer_3": "relu"})
        self.bad("'cnn.h.layer.02' does not name", **{"cnnh_layer_02": "relu"})
        self.bad("'cnn.h.layer.x' does not name", **{"cnnh_layer_x": "relu"})

    def test_layer_text(self):
        self.bad("cnn.h.layer.1 ('flat'): unknown layer type 'flat'", cnnh_layer_1="flat")
        self.bad("flatten has no setting 'size' (it has: none)", cnnh_layer_1="flatten size=1")
        self.bad("'x' is not key=value", cnnh_layer_1="flatten  x")
        self.bad("'units' is not key=value", cnnh_layer_2="dense units init=he_normal")
        self.bad("dense has no setting 'kernel'", cnnh_layer_2="dense units=3 kernel=1 init=he_normal")
        self.bad("setting 'units' given twice", cnnh_layer_2="dense units=3 units=3 init=he_normal")
        self.bad("dense needs units=", cnnh_layer_2="dense init=he_normal")
        self.bad("conv2d needs stride=, padding=", cnnh_layer_0="conv2d units=2 kernel=3 init=he_normal")
        self.bad("init=xavier is not one of", cnnh_layer_2="dense units=3 init=xavier")
        for value in ("-3", "+3", "3.0", "0x3", "", "99999999999"):
            self.bad("units=%s is not an integer" % value, cnnh_layer_2="dense units=%s init=he_normal" % value)

    def test_settings(self):
        self.bad("conv2d needs units, kernel and stride >= 1",
                 cnnh_layer_0="conv2d units=2 kernel=3 stride=0 padding=1 init=glorot_uniform")
        self.bad("kernel 5, stride 1, padding 0 does not fit the input 4x4: the kernel is larger than the padded input",
                 cnnh_layer_0="conv2d units=2 kernel=5 stride=1 padding=0 init=glorot_uniform")
        # a stride that does not tile the input rounds down, as in PyTorch: (4 - 3) // 2 + 1 = 1
        self.bad("tensor '2.weight' has shape (3, 32), its layer needs (3, 2)",
                 cnnh_layer_0="conv2d units=2 kernel=3 stride=2 padding=0 init=glorot_uniform")
        self.bad("padding 2 is more than half the 2x2 window", cnnh_layer_1="max_pool kernel=2 stride=2 padding=2")
        self.bad("ceil_mode must be 0 or 1", cnnh_layer_1="avg_pool kernel=2 stride=2 ceil_mode=2")
        self.bad("the 7x7 window is larger than the input 4x4 with padding 1",
                 cnnh_layer_1="avg_pool kernel=7 stride=2 padding=1")
        self.bad("dense needs a flat input, (C, 1, 1), and gets (2, 4, 4)", cnnh_layer_1="relu")
        self.bad("softmax needs a flat input", cnnh_layer_1="softmax")
        self.bad("the 5x5 window is larger than the input 4x4", cnnh_layer_1="max_pool kernel=5 stride=1")
        self.bad("avg_pool needs kernel and stride >= 1", cnnh_layer_1="avg_pool kernel=2 stride=0")
        for value in ("nan", "inf", "1e39", "0x1p-2", "", "1,5"):
            self.bad("alpha=%s is not a finite float32 number" % value, cnnh_layer_1="leaky_relu alpha=" + value)
        self.bad("alpha=0 is ambiguous", cnnh_layer_1="leaky_relu alpha=0")
        for value in ("0", "1", "-0.5", "1.5"):
            self.bad("dropout rate must be between 0 and 1", cnnh_layer_1="dropout rate=" + value)

    def test_image_layer_after_flat(self):
        conv = "conv2d units=2 kernel=1 stride=1 padding=0 init=glorot_uniform"
        self.bad("cnn.h.layer.5 (%r): conv2d needs an image (channels, height, width), but cnn.h.layer.2 (dense) "
                 "made its input a flat vector of 3: put conv and pool layers before flatten and dense" % conv,
                 cnnh_layers="6", cnnh_layer_3="relu", cnnh_layer_4="dropout rate=0.5", cnnh_layer_5=conv)
        self.bad("cnn.h.layer.2 ('max_pool kernel=1 stride=1'): max_pool needs an image (channels, height, width), "
                 "but cnn.h.layer.1 (flatten) made its input a flat vector of 32", cnnh_layer_2="max_pool kernel=1 stride=1")
        self.bad("cnn.h.layer.3 ('avg_pool kernel=1 stride=1'): avg_pool needs an image",
                 cnnh_layers="4", cnnh_layer_3="avg_pool kernel=1 stride=1")

    def test_tensors(self):
        tensors = self.tensors()
        del tensors["2.bias"]
        self.bad("the file lacks the tensor 2.bias", tensors)
        self.bad("tensor '1.weight' belongs to none of the layers", dict(self.tensors(), **{"1.weight": torch.ones(1)}))
        self.bad("tensor '2.weight' has shape (32, 3), its layer needs (3, 32)",
                 dict(self.tensors(), **{"2.weight": torch.ones(32, 3)}))
        self.bad("tensor '0.weight' has shape (2, 1, 9), its layer needs (2, 1, 3, 3)",
                 dict(self.tensors(), **{"0.weight": torch.ones(2, 1, 9)}))
        raw = header_file({"__metadata__": self.BASE,
                           "0.weight": {"dtype": "F32", "shape": [2, 1, 3, 3], "data_offsets": [0, 72]},
                           "0.bias": {"dtype": "I32", "shape": [2], "data_offsets": [72, 80]},
                           "2.weight": {"dtype": "F32", "shape": [3, 32], "data_offsets": [80, 464]},
                           "2.bias": {"dtype": "F32", "shape": [3], "data_offsets": [464, 476]}}, bytes(476))
        self.refused(cnnh.load, self.write(raw), says="tensor '0.bias' is torch.int32")


class Unsupported(Files):
    def refused(self, layers, says, shape=(1, 8, 8)):
        with self.assertRaises(ValueError) as caught:
            cnnh.save(nn.Sequential(*layers), self.path(), shape)
        self.assertFalse(os.listdir(self.folder.name))  # nothing written
        for text in [says] if isinstance(says, str) else says:
            self.assertIn(text, str(caught.exception))

    def test_conv2d(self):
        self.refused([nn.ReLU(), nn.Conv2d(1, 2, (3, 5))], ["module 1 (Conv2d(", "kernel (3, 5) is not square"])
        self.refused([nn.Conv2d(1, 2, 3, stride=(1, 2))], ["module 0", "stride (1, 2) is not square"])
        self.refused([nn.Conv2d(1, 2, 3, padding=(1, 0))], "padding (1, 0) is not square")
        self.refused([nn.Conv2d(1, 2, 3, padding="same")], "padding='same': give the padding as a number")
        self.refused([nn.Conv2d(1, 2, 3, padding="valid")], "padding='valid'")
        self.refused([nn.Conv2d(1, 2, 3, dilation=2)], "dilation must be 1")
        self.refused([nn.Conv2d(2, 2, 3, groups=2)], "groups must be 1", shape=(2, 8, 8))
        self.refused([nn.Conv2d(1, 2, 3, bias=False)], "bias=False")
        self.refused([nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")], "padding_mode='reflect'")
        self.refused([nn.Conv2d(3, 2, 3)], "module 0 (Conv2d(3, 2, kernel_size=(3, 3), stride=(1, 1))): weight has "
                     "shape (2, 3, 3, 3), but its input (1, 8, 8) needs (2, 1, 3, 3)")
        self.refused([nn.Conv2d(1, 2, 9)], "does not fit the input 8x8: the kernel is larger than the padded input")
        self.refused([nn.Flatten(), nn.Conv2d(64, 2, 1)], "module 1 (Conv2d(64, 2, kernel_size=(1, 1), stride=(1, 1))): "
                     "Conv2d needs an image (N, C, H, W), but module 0 (Flatten) made its input a flat vector of 64: "
                     "put Conv2d and pool layers before Flatten and Linear")
        self.refused([nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(4, 2, 1)],
                     ["module 4 (Conv2d(4, 2,", "but module 1 (Linear) made its input a flat vector of 4"])
        self.refused([nn.Conv2d(1, 3, 8), cnnh.FlattenLinear(3, 5), nn.Tanh(), nn.Conv2d(5, 2, 1)],
                     ["module 3 (Conv2d(5, 2,", "but module 1 (FlattenLinear) made its input a flat vector of 5"])
        with self.assertRaises(ValueError) as caught:
            cnnh.describe(nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Conv2d(4, 2, 1)), (1, 8, 8))
        self.assertIn("module 2 (Conv2d(4, 2, kernel_size=(1, 1), stride=(1, 1))): Conv2d needs an image",
                      str(caught.exception))

    def test_linear(self):
        self.refused([nn.Flatten(), nn.Linear(64, 3, bias=False)], ["module 1", "bias=False"])
        self.refused([nn.Linear(8, 3)], ["module 0", "Linear on an (N, C, H, W) tensor", "cnnh.FlattenLinear"])
        self.refused([nn.Flatten(), nn.Linear(60, 3)], "weight has shape (3, 60), but its input (64, 1, 1) needs (3, 64)")
        self.refused([cnnh.FlattenLinear(64, 3)], "dense needs a flat input, (C, 1, 1), and gets (1, 8, 8)")

    def test_pools(self):
        for pool in (nn.MaxPool2d, nn.AvgPool2d):
            name = pool.__name__
            self.refused([pool(2, padding=2)], [name, "padding 2 is more than half the 2x2 window"])
            self.refused([pool((2, 3))], "kernel (2, 3) is not square")
            self.refused([pool(2, (1, 2))], "stride (1, 2) is not square")
            self.refused([pool(9)], "the 9x9 window is larger than the input 8x8")
            self.refused([nn.Flatten(), pool(1)], "module 1 (%s(kernel_size=1, stride=1, padding=0" % name)
            self.refused([nn.Flatten(), nn.Linear(64, 6), nn.Sigmoid(), pool(1)],
                         ["module 3 (%s(" % name, "%s needs an image (N, C, H, W), but module 1 (Linear) made its input "
                          "a flat vector of 6: put Conv2d and pool layers before Flatten and Linear" % name])
        self.refused([nn.MaxPool2d(2, dilation=2)], "dilation must be 1")
        self.refused([nn.MaxPool2d(2, return_indices=True)], "return_indices=True")
        self.refused([nn.AvgPool2d(2, divisor_override=3)], "divisor_override must be None")
        self.refused([nn.AvgPool2d(3, 2, 1, count_include_pad=False)], "count_include_pad=False")
        # count_include_pad does not matter without padding
        cnnh.describe(nn.Sequential(nn.AvgPool2d(2, count_include_pad=False)), (1, 8, 8))

    def test_others(self):
        self.refused([nn.Flatten(start_dim=2)], "Flatten(start_dim=1, end_dim=-1)")
        self.refused([nn.Flatten(), nn.Softmax(dim=0)], ["module 1", "Softmax(dim=1)"])
        self.refused([nn.Flatten(), nn.Softmax()], "Softmax(dim=1)")
        self.refused([nn.Softmax(dim=-1)], "Softmax(dim=1)", shape=(3, 1, 1))
        self.refused([nn.Softmax(dim=1)], "softmax needs a flat input")
        self.refused([nn.LeakyReLU(0.0)], "use nn.ReLU for 0")
        self.refused([nn.Dropout(0.0)], "dropout rate must be between 0 and 1")
        self.refused([nn.Dropout(1.0)], "dropout rate must be between 0 and 1")
        self.refused([nn.ReLU(), nn.GroupNorm(1, 1)], ["module 1 (GroupNorm(", "not a layer cnn.h has"])
        self.refused([nn.ReLU(), nn.ReLU(), nn.Sequential(nn.ReLU())], ["module 2", "Sequential is not a layer"])

        class Mine(nn.ReLU):
            pass
        self.refused([Mine()], "its forward may differ")
        with self.assertRaises(ValueError):
            cnnh.save(nn.ReLU(), self.path(), (1, 8, 8))
        for shape in ((1, 8), (0, 8, 8), (1, 8, 8.0), "1,8,8"):
            with self.assertRaises(ValueError):
                cnnh.save(nn.Sequential(nn.ReLU()), self.path(), shape)
        with self.assertRaises(ValueError):
            cnnh.save(nn.Sequential(nn.ReLU()), self.path(), (1, 8, 8), "F64")

    def test_accepted(self):
        """Settings PyTorch spells differently but cnn.h has."""
        metadata = cnnh.describe(nn.Sequential(
            nn.Conv2d(1, 2, (3, 3), (1, 1), (1, 1)), nn.ReLU(inplace=True), nn.MaxPool2d((2, 2), (2, 2)),
            nn.Flatten(), nn.Dropout(0.5, inplace=True), nn.Linear(32, 4), nn.LeakyReLU(),
            nn.Softmax(dim=-1)), (1, 8, 8))
        self.assertEqual(metadata["cnn.h.layer.2"], "max_pool kernel=2 stride=2")
        self.assertEqual(metadata["cnn.h.layer.6"], "leaky_relu alpha=0.01")
        self.assertEqual(metadata["cnn.h.layer.7"], "softmax")


if __name__ == "__main__":
    unittest.main()
