#!/usr/bin/python3
"""train_resnet.py - the ResNet of examples/resnet.c, trained the same way in
PyTorch: the yardstick for what that architecture and recipe reach on the
same files, independently of cnn.h.

    /usr/bin/python3 examples/pytorch/train_resnet.py TRAIN.csv TEST.csv [--epochs 10] [--batch-norm-cnn]

The model is seed_add_resnet of examples/seed_models.h layer for layer:
conv 3x3 32 (bias, He normal) -> BatchNorm2d -> ReLU -> MaxPool2d(3, 2, 1);
three stages of two basic blocks (32, 64, 128 filters; stride 2 and a 1x1
projection with bias at the first block of stages 2 and 3); global average
pooling; Linear 47. With --batch-norm-cnn it is the seed CNN with batch norm
after each conv instead (examples/seed_models.h, seed_add_cnn_with).

The recipe is examples/seed.h's with the cnn's options (`make emnist-all`):
a seeded 90/10 split of the training file for validation, Adam (lr 1e-3,
betas 0.9/0.999, eps 1e-7 as cnn.h's), batch 256, 10 epochs, the rate
halved after each epoch from the 5th, and each training image shifted by up
to 10% of its size and turned by up to 10 degrees (bilinear, edges
repeated), drawn anew every epoch. The CSV rows are Kaggle's EMNIST layout
(label, then 784 pixels of a transposed image), read as cnn.h reads them.
Prints a line per epoch and `test accuracy: N%` last. Uses 2 threads
(torch.set_num_threads), as the README's cnn.h rows do.
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(path):
    rows = np.loadtxt(path, delimiter=",", dtype=np.float32)
    labels = torch.from_numpy(rows[:, 0].astype(np.int64))
    # EMNIST's CSV stores each image transposed; cnn.h's loader turns it back
    images = torch.from_numpy(rows[:, 1:] / 255.0).reshape(-1, 1, 28, 28).transpose(2, 3).contiguous()
    return images, labels


def he_conv(c_in, c_out, stride):
    conv = nn.Conv2d(c_in, c_out, 3, stride, 1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(he_conv(c_in, c_out, stride), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  he_conv(c_out, c_out, 1), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride)
            nn.init.kaiming_normal_(self.shortcut.weight, nonlinearity="relu")
            nn.init.zeros_(self.shortcut.bias)

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


def resnet(classes):
    layers = [he_conv(1, 32, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c_in = 32
    for stage, filters in enumerate((32, 64, 128)):
        for block in range(2):
            layers.append(Block(c_in, filters, 2 if stage > 0 and block == 0 else 1))
            c_in = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes)]
    return nn.Sequential(*layers)


def cnn_batch_norm(classes):
    layers = []
    c_in = 1
    for filters in (32, 64):
        for _ in range(2):
            layers += [nn.Conv2d(c_in, filters, 3, 1, 1), nn.BatchNorm2d(filters), nn.LeakyReLU(0.3)]
            c_in = filters
        layers += [nn.MaxPool2d(2, 2), nn.Dropout(0.25)]
    layers += [nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes)]
    return nn.Sequential(*layers)


def augment(images, generator):
    """Each image moved by up to 10% of its size and turned by up to 10 degrees."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.1 * 2  # affine_grid spans [-1, 1]: 2 per image
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, -shift[:, 0]], 1), torch.stack([sin, cos, -shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, images.shape, align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def accuracy(model, images, labels):
    model.eval()
    right, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(labels), 1024):
            out = model(images[start:start + 1024])
            loss += F.cross_entropy(out, labels[start:start + 1024], reduction="sum").item()
            right += (out.argmax(1) == labels[start:start + 1024]).sum().item()
    return loss / len(labels), right / len(labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-norm-cnn", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(1)
    images, labels = load(args.train)
    test_images, test_labels = load(args.test)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    held = len(labels) // 10
    val_images, val_labels = images[order[:held]], labels[order[:held]]
    images, labels = images[order[held:]], labels[order[held:]]
    print(f"train {len(labels)}, validation {len(val_labels)}, test {len(test_labels)} images")
    model = cnn_batch_norm(47) if args.batch_norm_cnn else resnet(47)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    generator = torch.Generator().manual_seed(2)
    total = 0.0
    for epoch in range(1, args.epochs + 1):
        start_time = time.time()
        model.train()
        shuffle = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), 256):
            pick = shuffle[start:start + 256]
            loss = F.cross_entropy(model(augment(images[pick], generator)), labels[pick])
            adam.zero_grad()
            loss.backward()
            adam.step()
        val_loss, val_accuracy = accuracy(model, val_images, val_labels)
        seconds = time.time() - start_time
        total += seconds
        print(f"epoch {epoch:2d}/{args.epochs}  val loss {val_loss:.4f}  val acc {100 * val_accuracy:6.2f}%  {seconds:.1f} s",
              flush=True)
        if epoch >= 5:  # cnn_fit_desc.lr_decay 0.5, lr_decay_after 5
            for group in adam.param_groups:
                group["lr"] *= 0.5
    print(f"trained {args.epochs} epochs in {total:.1f} s")
    print(f"test accuracy: {100 * accuracy(model, test_images, test_labels)[1]:.2f}%")


if __name__ == "__main__":
    main()
