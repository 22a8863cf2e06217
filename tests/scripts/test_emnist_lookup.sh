#!/bin/sh
# The tests that need EMNIST find it in EMNIST_DIR under Kaggle's names
# (emnist-balanced-train.csv, emnist-balanced-test.csv) as well as
# emnist47-*.csv (tests/test.h, test_emnist_path), and without it they count
# as skipped, neither passed nor failed, in tests/run.sh's last line.
# Checked on test_training's lenet5_one_epoch_on_emnist.
. "$(dirname "$0")/lib.sh"

program=$BUILD/tests/test_training

finds_kaggle_names() {
    [ -x "$program" ] || { fail "$program is not built"; return; }
    data=$(scratch kaggle)
    small_csv train 100 "$data/emnist-balanced-train.csv"
    small_csv test 50 "$data/emnist-balanced-test.csv"
    # 100 rows are far too few for its accuracy floor: it only has to run
    EMNIST_DIR=$data "$program" >"$data/log" 2>&1
    if grep -q '^skip lenet5_one_epoch_on_emnist' "$data/log"; then
        grep '^skip' "$data/log" | sed 's/^/    | /'
        fail "skipped although $data holds emnist-balanced-train.csv and -test.csv"
    fi
    grep -q 'EMNIST images: test accuracy' "$data/log" || fail "lenet5_one_epoch_on_emnist did not train on them"
}

counts_a_missing_emnist_as_skipped() {
    [ -x "$program" ] || { fail "$program is not built"; return; }
    data=$(scratch no-emnist)
    EMNIST_DIR=$data sh tests/run.sh "$data" "$program" >"$data/log" 2>&1
    grep -q "^skip lenet5_one_epoch_on_emnist: .*emnist-balanced-train.csv" "$data/log" ||
        fail "no line 'skip lenet5_one_epoch_on_emnist: ...' naming the file it looked for"
    grep -q '^ok   lenet5_one_epoch_on_emnist' "$data/log" && fail "lenet5_one_epoch_on_emnist passed without EMNIST"
    # (the program's other tests count as they will: only the skip matters here)
    last=$(tail -n 1 "$data/log")
    case $last in
    *" passed, "*" failed, 1 skipped") ;;
    *) fail "the runner's last line is '$last', expected 'N passed, N failed, 1 skipped'" ;;
    esac
}

run finds_kaggle_names
run counts_a_missing_emnist_as_skipped
report
