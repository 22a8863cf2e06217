#!/usr/bin/python3
"""bench_torch.py - the PyTorch side of `make bench` (tests/bench/run.sh
drives it); the same interface, work and output as tests/bench/bench.c:

    bench_torch.py MODEL BATCH SAMPLES THREADS DATA.csv
    bench_torch.py MODEL BATCH SAMPLES THREADS IMAGES.idx LABELS.idx

BENCH_TORCH_LAYOUT=channels_last stores the conv models' weights and the
images channels last (NHWC, PyTorch's torch.channels_last), which is usually
the faster for PyTorch's convolutions, by a margin that depends on the model,
the batch and the machine: run.sh runs both and keeps the better. The default
is PyTorch's usual NCHW.

Same models, same first BENCH_ROWS samples (scaled by 1/255, EMNIST CSV
images transposed as cnn.h does), same batches taken round them in the same
order, Adam lr 1e-3, the same warm-up steps before the clock starts, the same
batch-1 latency measurement. Run it with Debian's /usr/bin/python3 and
python3-torch.

Its result line also names PyTorch's version, its BLAS, the layout and, as
isa=, PyTorch's CPU capability: the instruction set its own (ATen) kernels
were dispatched to, e.g. AVX2 or AVX512 (ATEN_CPU_CAPABILITY caps it, as
CNN_MAX_ISA caps cnn.h's). Its convolutions (oneDNN) and matrix products
(OpenBLAS) pick their instruction sets on their own.
"""
import os
import sys

# Before torch loads: its OpenMP pool is sized from OMP_NUM_THREADS, and
# OpenBLAS (Debian's torch calls it for linear layers and for convolutions
# that do not go to oneDNN) has a thread pool of its own that would fight the
# OpenMP threads for the same cores. run.sh sets these explicitly (see there
# for why these values); the defaults here are the same.
THREADS = int(sys.argv[4]) if len(sys.argv) > 4 else 1
LAYOUT = os.environ.get("BENCH_TORCH_LAYOUT", "contiguous")
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# the same numbers as in bench.c
BENCH_ROWS = 4096
WARMUP_STEPS = 2
LATENCY_WARMUP, LATENCY_RUNS = 20, 300


def load(paths, rows):
    """The first `rows` images (N, 1, 28, 28) in [0, 1] and their labels.
    Read as bytes and turned into floats once, so that the peak memory holds
    one float copy of the data, as cnn.h's does."""
    if len(paths) == 1:  # Kaggle EMNIST CSV: label, then 784 pixels stored transposed
        table = np.loadtxt(paths[0], delimiter=",", max_rows=rows, dtype=np.uint8, ndmin=2)
        labels = table[:, 0].astype(np.int64)
        pixels = table[:, 1:].reshape(-1, 28, 28).transpose(0, 2, 1)
    else:  # IDX: 16-byte header before the images, 8 before the labels
        pixels = np.fromfile(paths[0], np.uint8, rows * 784, offset=16).reshape(-1, 28, 28)
        labels = np.fromfile(paths[1], np.uint8, rows, offset=8).astype(np.int64)
    images = pixels.astype(np.float32)  # a new C-ordered array: the transpose is done here
    images /= np.float32(255.0)
    return torch.from_numpy(images).reshape(-1, 1, 28, 28), torch.from_numpy(labels)


def build(name, classes):
    """The models of bench.c; they end in logits (softmax is inside the loss)."""
    if name == "lenet5":
        layers = [nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                  nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes)]
    elif name == "cnn":
        layers = []
        for cin, cout in ((1, 32), (32, 64)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.3),
                       nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.3),
                       nn.MaxPool2d(2), nn.Dropout(0.25)]
        layers += [nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
                   nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes)]
    elif name == "mlp":
        layers = [nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
                  nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, classes)]
    else:
        sys.exit("bench_torch.py: unknown model " + name)
    return nn.Sequential(*layers)


def blas_in_use():
    """Which BLAS the process loaded: Debian's libblas.so.3 is the reference
    BLAS (in .../blas/) or OpenBLAS (in .../openblas-pthread/, -openmp or
    -serial), whichever its alternatives system points to."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            name, folder = os.path.basename(path), os.path.basename(os.path.dirname(path))
            if "openblas" in name or "openblas" in folder:
                return folder if folder.startswith("openblas") else name
            if name.startswith("libblas.so"):
                return "reference" if folder == "blas" else folder
    return "unknown"


def cpu_capability():
    """ATen's CPU capability. Newer PyTorch has a function for it; 1.13,
    Debian's, only prints it in torch.__config__.show(), as a line
    "CPU capability usage: AVX2". Spaces (as in "Z VECTOR") become _ to
    keep the result line's key=value words whole."""
    try:
        from torch.backends import cpu
        return cpu.get_cpu_capability().replace(" ", "_")
    except (ImportError, AttributeError):
        pass
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip().replace(" ", "_")
    return "unknown"


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    name, batch, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if batch < 1 or samples < batch or THREADS < 1:
        sys.exit("bench_torch.py: need 1 <= BATCH <= SAMPLES and THREADS >= 1")
    torch.set_num_threads(THREADS)
    torch.manual_seed(1)
    images, labels = load(sys.argv[5:], BENCH_ROWS)
    usable_rows = len(labels) - len(labels) % batch  # whole batches only, as bench.c
    if usable_rows < batch:
        sys.exit("bench_torch.py: a batch of %d needs as many samples, the data has %d" % (batch, len(labels)))
    net = build(name, int(labels.max()) + 1)  # the classes seen, as bench.c counts them
    if LAYOUT == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    elif LAYOUT != "contiguous":
        sys.exit("bench_torch.py: BENCH_TORCH_LAYOUT is contiguous or channels_last, not " + LAYOUT)
    adam = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)  # cnn.h's (Keras') epsilon

    def step(first):
        x, y = images[first:first + batch], labels[first:first + batch]  # views, no copies
        adam.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        adam.step()

    net.train()
    for _ in range(WARMUP_STEPS):
        step(0)
    steps = samples // batch
    start = time.perf_counter()
    for i in range(steps):
        step(i * batch % usable_rows)
    seconds = time.perf_counter() - start

    # batch-1 inference, softmax included as in cnn.h's forward pass
    net.eval()
    latencies = []
    with torch.inference_mode():
        for i in range(LATENCY_WARMUP + LATENCY_RUNS):
            x = images[i % len(images)].unsqueeze(0)
            t = time.perf_counter()
            F.softmax(net(x), dim=1)
            latencies.append(time.perf_counter() - t)
    latency = sorted(latencies[LATENCY_WARMUP:])[LATENCY_RUNS // 2]

    print("RESULT impl=pytorch model=%s batch=%d threads=%d samples=%d seconds=%.4f samples_per_s=%.1f "
          "latency_us=%.1f maxrss_kb=%d torch=%s blas=%s layout=%s isa=%s" %
          (name, batch, torch.get_num_threads(), steps * batch, seconds, steps * batch / seconds,
           latency * 1e6, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, torch.__version__, blas_in_use(), LAYOUT,
           cpu_capability()))


if __name__ == "__main__":
    main()
