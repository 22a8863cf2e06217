# lib.sh - the harness of the shell tests (tests/scripts/test_*.sh), the
# twin of tests/test.h for what a C program cannot check well: the README's
# program built as a user builds it, `make install`, the examples run as
# commands, the text of the Makefile and the scripts.
#
#   . "$(dirname "$0")/lib.sh"      (then the working folder is the repository)
#   a_test() { ...; fail "what went wrong"; ...; skip "why not here"; return; }
#   run a_test; ...; report
#
# A test passes when it calls no fail. skip ends it as skipped (after a
# fail it still fails). The last line is "RESULT passed failed skipped", as
# test.h prints it, for tests/run.sh to add up.
# Environment: CC (default cc), BUILD (default build), STB_DIR, EMNIST_DIR
# (default data), TEST_TMP (set by tests/run.sh; else one is made here).
# shellcheck shell=sh
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
CC=${CC:-cc}
BUILD=${BUILD:-build}
STB_DIR=${STB_DIR:-/usr/include/stb}
EMNIST_DIR=${EMNIST_DIR:-data}
if [ -z "${TEST_TMP:-}" ]; then
    TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-test.XXXXXX") || exit 1
    trap 'rm -rf "$TEST_TMP"' EXIT
fi
test_passed=0
test_failed=0
test_skipped=0

fail() { echo "    $*"; test_fails=$((test_fails + 1)); }
skip() { test_skip_reason=$*; }

run() {
    test_fails=0
    test_skip_reason=
    "$1"
    if [ "$test_fails" -gt 0 ]; then
        echo "FAIL $1"; test_failed=$((test_failed + 1))
    elif [ -n "$test_skip_reason" ]; then
        echo "skip $1: $test_skip_reason"; test_skipped=$((test_skipped + 1))
    else
        echo "ok   $1"; test_passed=$((test_passed + 1))
    fi
}

report() {
    echo "RESULT $test_passed $test_failed $test_skipped"
    [ "$test_failed" -eq 0 ]
}

# A new empty folder under TEST_TMP, named after $1.
scratch() { mktemp -d "$TEST_TMP/$1.XXXXXX"; }

# Prints the program of README.md's "Using cnn.h in your project": its one
# ```c block that holds "int main". Fails (prints nothing) unless there is
# exactly one such block in that section.
readme_program() {
    awk '
        /^## / { in_section = ($0 == "## Using cnn.h in your project") }
        in_section && /^```c$/ { in_block = 1; block = ""; next }
        in_block && /^```$/ { in_block = 0; if (block ~ /int main/) { found++; program = block } next }
        in_block { block = block $0 "\n" }
        END { if (found != 1) exit 1; printf "%s", program }' "$ROOT/README.md"
}

# The EMNIST CSV file of a split (train or test) in EMNIST_DIR, by either of
# its names (tests/test.h's test_emnist_path looks for the same); nothing
# when there is none.
emnist_csv() {
    for name in "emnist47-$1.csv" "emnist-balanced-$1.csv"; do
        if [ -f "$EMNIST_DIR/$name" ]; then echo "$EMNIST_DIR/$name"; return; fi
    done
}

# Writes rows CSV rows of 28x28 images to a file: the first ones of
# EMNIST's split when it is there, else generated ones (labels 0..46 in
# turn, pixels 0..255, no header).
small_csv() { # split rows file
    source=$(emnist_csv "$1")
    if [ -n "$source" ]; then
        head -n "$2" "$source" >"$3"
    else
        awk -v rows="$2" -v seed="$2" 'BEGIN {
            srand(seed)
            for (r = 0; r < rows; r++) {
                line = r % 47
                for (i = 0; i < 784; i++) line = line "," int(256 * rand())
                print line
            }
        }' >"$3"
    fi
}

# 0 when valgrind is installed.
have_valgrind() { command -v valgrind >/dev/null 2>&1; }
