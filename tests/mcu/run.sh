#!/bin/sh
# tests/mcu/run.sh OUT - make mcu: a model exported as C (build/export), in
# float32 and in int8, run on an emulated Cortex-M4 (qemu-system-arm -M
# mps2-an386) on test images compiled into the firmware; each must give the
# host's answers (tests/mcu/README.md). Exits 0 with SKIPPED when the cross
# compiler or qemu cannot be installed.
# From the Makefile's environment: BUILD (the programs), MODEL (else a small
# LeNet-5 is trained here), TRAIN_CSV and TEST_CSV (EMNIST), or FASHION_TRAIN
# and FASHION_TEST (IDX images and labels); MCU_IMAGES (300), MCU_ROWS (1,000
# calibration rows, those after the images), MCU_TIMEOUT (seconds a run).
set -eu
OUT=$1
BUILD=${BUILD:-build}
MODEL=${MODEL:-$BUILD/lenet5.cnn}
TRAIN_CSV=${TRAIN_CSV:-}
TEST_CSV=${TEST_CSV:-}
FASHION_TRAIN=${FASHION_TRAIN:-}
FASHION_TEST=${FASHION_TEST:-}
IMAGES=${MCU_IMAGES:-300}
ROWS=${MCU_ROWS:-1000}
TIMEOUT=${MCU_TIMEOUT:-600}
HOST=$BUILD/mcu/host
EXAMPLES=/usr/share/doc/gcc-arm-none-eabi/examples
mkdir -p "$OUT"

skip() { echo "make mcu: SKIPPED: $*"; exit 0; }
fail() { echo "make mcu: FAILED: $*"; exit 1; }

# ---- the tools: Debian's arm-none-eabi gcc and newlib, and qemu
sh tests/deps.sh mcu || echo "make mcu: could not install the packages (tests/deps.sh mcu)"
for tool in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm; do
    command -v $tool >/dev/null || skip "no $tool (Debian: gcc-arm-none-eabi, qemu-system-arm)"
done
[ -f /usr/lib/arm-none-eabi/newlib/rdimon.specs ] || skip "no newlib for arm-none-eabi (Debian: libnewlib-arm-none-eabi)"

# The Cortex-M4 startup file and linker script of gcc-arm-none-eabi's examples,
# used where they are (unpacked into OUT if the package compressed them); the
# script's memory regions edited for mps2-an386: 4 MB of code memory (ZBT
# SSRAM1) at 0, 4 MB of RAM (SSRAM2, 3) at 0x20000000, where the example has
# 128 KB at 0 and 8 KB at 0x10000000, which is too small and hangs there.
example() {
    if [ -f "$EXAMPLES/$1" ]; then echo "$EXAMPLES/$1"
    elif [ -f "$EXAMPLES/$1.gz" ]; then
        gunzip -c "$EXAMPLES/$1.gz" >"$OUT/${1##*/}.tmp" && mv "$OUT/${1##*/}.tmp" "$OUT/${1##*/}" && echo "$OUT/${1##*/}"
    else skip "no $EXAMPLES/$1 (gcc-arm-none-eabi's examples)"
    fi
}
STARTUP=$(example startup/startup_ARMCM4.S)
SCRIPT=$(example ldscripts/gcc.ld)
sed -e 's/^\([ \t]*FLASH[^:]*:[ \t]*ORIGIN[ \t]*=[ \t]*\)0x0*,[ \t]*LENGTH[ \t]*=[^/]*/\10x00000000, LENGTH = 0x400000 /' \
    -e 's/^\([ \t]*RAM[^:]*:[ \t]*ORIGIN[ \t]*=[ \t]*\)0x[0-9a-fA-F]*,[ \t]*LENGTH[ \t]*=[^/]*/\10x20000000, LENGTH = 0x400000 /' \
    -e 's|/\* 128K \*/|/* 4 MB, mps2-an386 */|; s|/\* 8K \*/|/* 4 MB, mps2-an386 */|' "$SCRIPT" >"$OUT/mps2-an386.ld"
if ! grep -q 'FLASH.*ORIGIN = 0x00000000, LENGTH = 0x400000' "$OUT/mps2-an386.ld" ||
    ! grep -q 'RAM.*ORIGIN = 0x20000000, LENGTH = 0x400000' "$OUT/mps2-an386.ld"; then
    fail "$SCRIPT: its MEMORY block is not the one this script edits"
fi

# ---- the model: MODEL, else LeNet-5 trained here briefly
if [ ! -f "$MODEL" ]; then
    echo "make mcu: no model at $MODEL: training a small LeNet-5 ($OUT/lenet5-small.cnn)"
    MODEL=$OUT/lenet5-small.cnn
    if [ -n "$TRAIN_CSV" ]; then   # two epochs on 5,000 rows, tested on 1,000: some 70% in a few seconds
        head -n 5000 "$TRAIN_CSV" >"$OUT/train-5000.csv"
        head -n 1000 "$TEST_CSV" >"$OUT/test-1000.csv"
        "$BUILD/lenet5" --train "$OUT/train-5000.csv" --test "$OUT/test-1000.csv" --classes 47 --epochs 2 --batch 32 \
            --model "$MODEL" >"$OUT/train.log" ||
            fail "training failed ($OUT/train.log)"
    else                           # the same on Fashion-MNIST: some 80%
        # shellcheck disable=SC2086 # two files each
        "$HOST" slice $FASHION_TRAIN 5000 "$OUT"
        # shellcheck disable=SC2086
        "$BUILD/lenet5" --train "$OUT/train.csv" --test-idx $FASHION_TEST --classes 10 --epochs 2 --batch 32 \
            --model "$MODEL" >"$OUT/train.log" ||
            fail "training failed ($OUT/train.log)"
    fi
    grep 'test accuracy' "$OUT/train.log"
fi

# ---- the images, the host's answers, the two exports
if [ -n "$TEST_CSV" ]; then
    echo "make mcu: $MODEL on the first $IMAGES images of $TEST_CSV"
    "$HOST" images "$MODEL" "$TEST_CSV" "$IMAGES" "$OUT" "$ROWS"
else
    echo "make mcu: $MODEL on the first $IMAGES images of Fashion-MNIST's test set"
    # shellcheck disable=SC2086
    "$HOST" images "$MODEL" --idx $FASHION_TEST "$IMAGES" "$OUT" "$ROWS"
fi
ROWS=$(grep -c . "$OUT/calibration.csv")
"$BUILD/export" "$MODEL" "$OUT/model_f.c" --name model_f
"$BUILD/export" "$MODEL" "$OUT/model_q.c" --name model_q --int8 --calibrate "$OUT/calibration.csv" --rows "$ROWS"

# ---- each firmware: build, size, run, compare
ARCH="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"
CFLAGS="$ARCH -std=c99 -Wall -Wextra -pedantic -Werror -O2 -ffp-contract=off -ffunction-sections -fdata-sections"
# shellcheck disable=SC2086 # flags, one word each
arm-none-eabi-gcc $ARCH -D__STACK_SIZE=0x4000 -c "$STARTUP" -o "$OUT/startup_ARMCM4.o"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CFLAGS -c "$OUT/images.c" -o "$OUT/images.o"
failed=
for mode in float int8; do
    name=model_f what=float32
    [ $mode = int8 ] && name=model_q what=int8
    elf=$OUT/firmware_$mode.elf
    # shellcheck disable=SC2086 # flags
    arm-none-eabi-gcc $CFLAGS -c "$OUT/$name.c" -o "$OUT/$name.o"
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $CFLAGS -DMCU_NAME=$name -I"$OUT" tests/mcu/firmware.c "$OUT/$name.o" "$OUT/images.o" \
        "$OUT/startup_ARMCM4.o" -T "$OUT/mps2-an386.ld" --specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections -lm -o "$elf"
    echo "== $what: the model alone ($name.o: text = code and weights, bss = its buffers), then the whole firmware"
    echo "   (text = flash: the model, newlib and the $IMAGES images; data + bss = RAM)"
    arm-none-eabi-size "$OUT/$name.o" "$elf"
    start=$(date +%s%N)
    status=0
    timeout "$TIMEOUT" qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -kernel "$elf" >"$OUT/$mode.txt" 2>"$OUT/$mode.err" || status=$?
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    if [ $status != 0 ]; then
        cat "$OUT/$mode.err"
        if [ $status = 124 ]; then echo "$what: no answer in $TIMEOUT s (MCU_TIMEOUT)"
        else echo "$what: the firmware exited with status $status"
        fi
        failed="$failed $mode"
        continue
    fi
    echo "$what on the emulated Cortex-M4: $(grep '^accuracy: ' "$OUT/$mode.txt") in $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
    "$HOST" compare "$OUT/expected_$mode.txt" "$OUT/$mode.txt" $mode || failed="$failed $mode"
done
[ -z "$failed" ] || fail "the Cortex-M4 did not give the host's answers:$failed (see $OUT)"
echo "make mcu: float32 and int8 on the emulated Cortex-M4 give the host's answers"
