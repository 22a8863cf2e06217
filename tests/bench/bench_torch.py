#!/usr/bin/python3
"""bench_torch.py - the PyTorch side of `make bench` (tests/bench/run.sh
drives it); the same interface and output as tests/bench/bench.c:

    bench_torch.py MODEL BATCH SAMPLES THREADS DATA.csv
    bench_torch.py MODEL BATCH SAMPLES THREADS IMAGES.idx LABELS.idx

Same models, same first SAMPLES samples (scaled by 1/255, EMNIST CSV images
transposed as cnn.h does), same batches, Adam lr 1e-3, one warm-up step.
Run it with Debian's /usr/bin/python3 and python3-torch.
"""
import os
import sys

# Before torch loads: its OpenMP pool is sized from OMP_NUM_THREADS, and a
# BLAS with threads of its own would fight that pool for the same cores.
THREADS = int(sys.argv[4]) if len(sys.argv) > 4 else 1
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LATENCY_WARMUP, LATENCY_RUNS = 20, 300


def load(paths, samples):
    """The first `samples` images (N, 1, 28, 28) in [0, 1] and their labels."""
    if len(paths) == 1:  # Kaggle EMNIST CSV: label, then 784 pixels stored transposed
        rows = np.loadtxt(paths[0], delimiter=",", max_rows=samples, dtype=np.float32)
        labels = rows[:, 0].astype(np.int64)
        images = rows[:, 1:].reshape(-1, 28, 28).transpose(0, 2, 1)
    else:  # IDX: 16-byte header before the images, 8 before the labels
        images = np.fromfile(paths[0], np.uint8, samples * 784, offset=16).reshape(-1, 28, 28).astype(np.float32)
        labels = np.fromfile(paths[1], np.uint8, samples, offset=8).astype(np.int64)
    images = np.ascontiguousarray(images / np.float32(255.0), dtype=np.float32)
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


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    name, batch, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(THREADS)
    torch.manual_seed(1)
    images, labels = load(sys.argv[5:], samples)
    if len(labels) < samples:
        sys.exit("bench_torch.py: asked for %d samples, the data has %d" % (samples, len(labels)))
    net = build(name, int(labels.max()) + 1)  # the classes seen, as bench.c counts them
    adam = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)  # cnn.h's (Keras') epsilon

    def step(i):
        x, y = images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch]
        adam.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        adam.step()

    net.train()
    step(0)  # warm-up: first-call allocations and kernel choices
    steps = samples // batch
    start = time.perf_counter()
    for i in range(steps):
        step(i)
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
          "latency_us=%.1f maxrss_kb=%d torch=%s" %
          (name, batch, torch.get_num_threads(), steps * batch, seconds, steps * batch / seconds,
           latency * 1e6, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, torch.__version__))


if __name__ == "__main__":
    main()
