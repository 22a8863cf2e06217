#!/bin/sh
# make test-web (tests/web/README.md): the page of examples/web, as `make web`
# builds it into $BUILD/web, in Debian's chromium, headless.
#   tests/web/run.sh OUT
# From the Makefile's environment: BUILD (the programs and the page), MODEL
# (a model to test with; empty: a LeNet-5 trained here for one epoch on a
# slice of TRAIN_CSV and TEST_CSV, EMNIST, else of FASHION_TRAIN and
# FASHION_TEST, Fashion-MNIST's IDX files, its classes named by FASHION_NAMES
# as `make demo` names them). OUT gets the models, an RGB
# model trained by examples/folders on its drawn shapes, a small ResNet
# (batch norm, residual blocks, global average pooling) trained by
# examples/resnet for one epoch on 1,000 rows, the bad files, the logs, the
# screenshots, and the site the test serves (site/: the page's files and
# the three models). Exits 1 when a check fails.
set -eu
OUT=${1:?usage: tests/web/run.sh OUT}
BUILD=${BUILD:-build}
MODEL=${MODEL:-}
mkdir -p "$OUT"
fail() {
    echo "make test-web: FAILED: $*" >&2
    exit 1
}

# ---- the models: MODEL or a LeNet-5 trained here briefly, and an RGB one
if [ -n "$MODEL" ]; then
    [ -f "$MODEL" ] || fail "no model at $MODEL"
    [ "$MODEL" = "$OUT/model.cnn" ] || cp "$MODEL" "$OUT/model.cnn"
    echo "make test-web: testing with $MODEL"
elif [ -n "${TRAIN_CSV:-}" ]; then # one epoch on 10,000 rows: some 67% in a few seconds
    head -n 10000 "$TRAIN_CSV" >"$OUT/train.csv"
    head -n 2000 "$TEST_CSV" >"$OUT/test.csv"
    "$BUILD/lenet5" --train "$OUT/train.csv" --test "$OUT/test.csv" --classes 47 --epochs 1 --batch 32 \
        --model "$OUT/model.cnn" >"$OUT/train.log" || fail "training failed ($OUT/train.log)"
    echo "make test-web: a LeNet-5 trained for one epoch on the first 10,000 rows of $TRAIN_CSV: $(grep 'test accuracy' "$OUT/train.log")"
else # the same on Fashion-MNIST, its first 10,000 training images as IDX files
    # shellcheck disable=SC2086 # two files each
    python3 - $FASHION_TRAIN "$OUT" 10000 <<'EOF' || fail "cannot slice $FASHION_TRAIN"
import struct, sys
images, labels, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(images, "rb") as f:
    magic, total, rows, cols = struct.unpack(">IIII", f.read(16))
    pixels = f.read(count * rows * cols)
with open(labels, "rb") as f:
    label_magic, label_total = struct.unpack(">II", f.read(8))
    classes = f.read(count)
with open(out + "/train-images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", magic, count, rows, cols) + pixels)
with open(out + "/train-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", label_magic, count) + classes)
EOF
    # shellcheck disable=SC2086
    "$BUILD/lenet5" --train-idx "$OUT/train-images-idx3-ubyte" "$OUT/train-labels-idx1-ubyte" --test-idx $FASHION_TEST \
        --classes 10 ${FASHION_NAMES:+--names "$FASHION_NAMES"} --epochs 1 --batch 32 --model "$OUT/model.cnn" >"$OUT/train.log" ||
        fail "training failed ($OUT/train.log)"
    echo "make test-web: no EMNIST: a LeNet-5 trained for one epoch on 10,000 Fashion-MNIST images: $(grep 'test accuracy' "$OUT/train.log")"
fi
rm -rf "$OUT/shapes" "$OUT/resnet-out"
if ! "$BUILD/folders" --generate "$OUT/shapes" 20 >"$OUT/shapes.log" ||
    ! "$BUILD/folders" "$OUT/shapes" --epochs 3 --model "$OUT/shapes.cnn" >>"$OUT/shapes.log"; then
    fail "examples/folders failed ($OUT/shapes.log)"
fi
# a small ResNet (batch norm, residual blocks, global average pooling; its
# maps are the first conv's after batch norm, ReLU and a padded pool), one
# epoch on the first 1,000 training images: EMNIST's rows, else
# Fashion-MNIST's written as CSV rows (label, then the pixels)
if [ -n "${TRAIN_CSV:-}" ]; then
    head -n 1000 "$TRAIN_CSV" >"$OUT/resnet.csv"
else
    # shellcheck disable=SC2086 # two files
    python3 - $FASHION_TRAIN "$OUT/resnet.csv" 1000 <<'EOF' || fail "cannot read $FASHION_TRAIN"
import struct, sys
images, labels, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(images, "rb") as f:
    magic, total, rows, cols = struct.unpack(">IIII", f.read(16))
    pixels = f.read(count * rows * cols)
with open(labels, "rb") as f:
    f.read(8)
    classes = f.read(count)
with open(out, "w") as f:
    for i in range(count):
        f.write(",".join(map(str, [classes[i], *pixels[i * rows * cols:(i + 1) * rows * cols]])) + "\n")
EOF
fi
"$BUILD/resnet" --train "$OUT/resnet.csv" --test "$OUT/resnet.csv" --epochs 1 --out "$OUT/resnet-out" >"$OUT/resnet.log" &&
    cp "$OUT/resnet-out/model.cnn" "$OUT/resnet.cnn" || fail "examples/resnet failed ($OUT/resnet.log)"

# ---- the site: the page as `make web` builds it (links to its files in
# $BUILD/web), with the test's models
rm -rf "$OUT/site"
mkdir -p "$OUT/site"
for file in index.html web.js web.css cnn.wasm emnist-balanced-mapping.txt; do
    [ -f "$BUILD/web/$file" ] || fail "no $BUILD/web/$file (make web-page builds it)"
    ln -s "$(cd "$BUILD/web" && pwd)/$file" "$OUT/site/$file"
done
cp "$OUT/model.cnn" "$OUT/shapes.cnn" "$OUT/resnet.cnn" "$OUT/site/"

# ---- playwright-core, then the site on a loopback port the system picks
sh tests/web/setup.sh "$BUILD/npm/web" || fail "playwright-core is not installed"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$OUT/site" >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null' EXIT
trap 'exit 1' INT TERM
port=
for _ in $(seq 50); do
    port=$(sed -n 's/.* port \([0-9][0-9]*\) .*/\1/p' "$OUT/server.log" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || fail "the server did not start ($OUT/server.log)"
    sleep 0.1
done
[ -n "$port" ] || fail "the server did not say its port ($OUT/server.log)"
node tests/web/test.mjs "http://127.0.0.1:$port" "$OUT" "$BUILD"
