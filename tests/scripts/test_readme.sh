#!/bin/sh
# The program of README.md's "Using cnn.h in your project", taken from the
# README itself so the two cannot drift, built as the README says (and
# under -Wall -Wextra -pedantic -Werror) and run where a user runs it: in a
# folder holding Kaggle's emnist-balanced-train.csv and -test.csv (here a
# few hundred rows, so its epochs are quick). It must print its progress and
# the test accuracy and exit 0; without either file, name that file, say
# nothing of the other and exit non-zero; and, when valgrind is installed,
# do all of it without a memory error or a leak.
. "$(dirname "$0")/lib.sh"

dir=$(scratch readme)

builds_as_the_readme_says() {
    if ! readme_program >"$dir/example.c"; then
        fail "README.md: no single \`\`\`c block with int main under '## Using cnn.h in your project'"
        return
    fi
    grep -q '^#include "cnn.h"' "$dir/example.c" || fail 'the program does not #include "cnn.h"'
    grep -q 'cc -std=c99 -O2 example.c -o example -lm' README.md || fail "README.md no longer says how to compile it"
    (cd "$dir" && $CC -std=c99 -O2 -I"$ROOT" example.c -o example -lm) >"$dir/cc.log" 2>&1 ||
        { cat "$dir/cc.log"; fail "$CC -std=c99 -O2 example.c -o example -lm failed"; }
    (cd "$dir" && $CC -std=c99 -O2 -Wall -Wextra -pedantic -Werror -I"$ROOT" example.c -o strict -lm) >"$dir/strict.log" 2>&1 ||
        { cat "$dir/strict.log"; fail "it has warnings under -Wall -Wextra -pedantic -Werror"; }
}

# run_in FOLDER LOG: runs the program in FOLDER (under valgrind when it is
# installed), stdout and stderr into LOG; sets status (valgrind's own
# failure is 99).
run_in() {
    if have_valgrind; then
        (cd "$1" && valgrind -q --error-exitcode=99 --leak-check=full "$dir/example") >"$2" 2>&1
    else
        (cd "$1" && "$dir/example") >"$2" 2>&1
    fi
    status=$?
}

trains_and_reports_the_accuracy() {
    [ -x "$dir/example" ] || { fail "not built"; return; }
    data=$(scratch readme-data)
    small_csv train 200 "$data/emnist-balanced-train.csv"
    small_csv test 100 "$data/emnist-balanced-test.csv"
    run_in "$data" "$data/log"
    sed 's/^/    | /' "$data/log" | tail -n 4
    [ "$status" -ne 99 ] || fail "valgrind found errors (above)"
    [ "$status" -eq 0 ] || fail "exit status $status, expected 0"
    grep -q '^test accuracy: [0-9.]*%$' "$data/log" || fail "no 'test accuracy: N%' line"
    grep -q '^epoch  *[0-9]*/[0-9]* ' "$data/log" || fail "no progress (no 'epoch N/M' line from cnn_progress_epoch)"
}

# missing_file PRESENT MISSING
missing_file() {
    data=$(scratch readme-missing)
    small_csv "$1" 20 "$data/emnist-balanced-$1.csv"
    run_in "$data" "$data/log"
    sed 's/^/    | /' "$data/log"
    [ "$status" -ne 99 ] || fail "valgrind found errors (above)"
    [ "$status" -ne 0 ] || fail "exit status 0 without emnist-balanced-$2.csv"
    grep -q "emnist-balanced-$2\.csv" "$data/log" || fail "the message does not name emnist-balanced-$2.csv"
    grep -q "emnist-balanced-$1\.csv" "$data/log" && fail "the message speaks of emnist-balanced-$1.csv, which loaded"
    grep -q 'test accuracy' "$data/log" && fail "it went on to train"
}

says_which_file_is_missing() {
    [ -x "$dir/example" ] || { fail "not built"; return; }
    missing_file test train
    missing_file train test
}

run builds_as_the_readme_says
run trains_and_reports_the_accuracy
run says_which_file_is_missing
report
