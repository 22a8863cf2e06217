#!/bin/sh
# Trains the seed models on EMNIST and prints a table of what they reached.
#   sh examples/emnist-all.sh BUILD_DIR EMNIST_DIR [MODEL...]
# (`make emnist-all` runs it.) MODEL is lenet5, mlp, cnn, cnn-bn (the cnn
# with --batch-norm) or resnet (default: lenet5 mlp cnn, in that order). Each trains on EMNIST_DIR/emnist47-train.csv (or
# Kaggle's emnist-balanced-train.csv) with its defaults - 10 epochs, batch
# 256, Adam 1e-3 - and reports on the matching test file. Its output goes to
# BUILD_DIR/emnist-all/MODEL.log, its pictures and model to
# BUILD_DIR/emnist-all/MODEL/. The cnn also halves its learning rate after
# each epoch from the 5th and trains on shifted and rotated images, which
# takes it from 87.6% to 89.1% (README.md, "The seed models"); set CNN_ARGS=
# to train it plainly. cnn-bn and resnet train the same way (RESNET_ARGS=
# trains the resnet plainly). Extra options for every model can be given in
# $EMNIST_ARGS (e.g. "--epochs 1"); OMP_NUM_THREADS sets the thread count.
# The table's numbers are read from each program's last lines:
#   total parameters: N / trained N epochs in S s / test accuracy: A%
set -u
build=$1
data=$2
shift 2
models=${*:-lenet5 mlp cnn}

pick() { for f in "$@"; do [ -f "$f" ] && { echo "$f"; return; }; done; }
train=$(pick "$data/emnist47-train.csv" "$data/emnist-balanced-train.csv")
test=$(pick "$data/emnist47-test.csv" "$data/emnist-balanced-test.csv")
mapping=$(pick "$data/emnist-balanced-mapping.txt" data/emnist-balanced-mapping.txt)
if [ -z "$train" ] || [ -z "$test" ]; then
    echo "emnist-all: no emnist47-{train,test}.csv or emnist-balanced-{train,test}.csv in '$data' (see data/README.md)" >&2
    exit 1
fi
out=$build/emnist-all
mkdir -p "$out"

tuned="--lr-decay 0.5 --decay-after 5 --shift 0.1 --rotate 10" # the cnn's schedule and augmentation
failed=0
for model in $models; do
    case $model in
    lenet5) mkdir -p "$out/lenet5"; args="--model $out/lenet5/lenet5.cnn${mapping:+ --mapping $mapping}" ;;
    mlp) args="--out $out/$model${mapping:+ --mapping $mapping}" ;;
    cnn) args="--out $out/$model${mapping:+ --mapping $mapping} ${CNN_ARGS-$tuned}" ;;
    cnn-bn) args="--out $out/$model${mapping:+ --mapping $mapping} ${CNN_ARGS-$tuned} --batch-norm" ;;
    resnet) args="--out $out/$model${mapping:+ --mapping $mapping} ${RESNET_ARGS-$tuned}" ;;
    *) echo "emnist-all: unknown model '$model' (lenet5, mlp, cnn, cnn-bn or resnet)" >&2; exit 2 ;;
    esac
    echo "== $model"
    # the program's own status, not tee's
    { "$build/${model%-bn}" --train "$train" --test "$test" $args ${EMNIST_ARGS:-} 2>&1; echo $? >"$out/$model.status"; } |
        tee "$out/$model.log"
    [ "$(cat "$out/$model.status")" = 0 ] || { echo "emnist-all: $model failed" >&2; failed=1; }
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo
echo "EMNIST balanced (47 classes): train $(basename "$train"), test $(basename "$test")"
echo "machine: ${cpu:-unknown CPU}, $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') logical CPUs, threads: ${OMP_NUM_THREADS:-all}"
printf '%-8s %12s %7s %9s %14s\n' model parameters epochs seconds "test accuracy"
for model in $models; do
    log=$out/$model.log
    params=$(sed -n 's/^total parameters: //p' "$log" | tail -n 1)
    epochs=$(sed -n 's/^trained \([0-9]*\) epochs in .*/\1/p' "$log" | tail -n 1)
    seconds=$(sed -n 's/^trained [0-9]* epochs in \([0-9.]*\) s$/\1/p' "$log" | tail -n 1)
    accuracy=$(sed -n 's/^test accuracy: //p' "$log" | tail -n 1)
    printf '%-8s %12s %7s %9s %14s\n' "$model" "${params:--}" "${epochs:--}" "${seconds:--}" "${accuracy:-failed}"
done
echo "seconds: wall time of training (mlp and cnn include the validation after each epoch)"
exit $failed
