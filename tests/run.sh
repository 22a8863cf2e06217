#!/bin/sh
# Runs every test program and compile check, and ends with the line
# "N passed, N failed", followed by ", N skipped" when tests were skipped.
# Exits non-zero when anything failed.
#   tests/run.sh BUILD_DIR TEST_PROGRAM...
# A program counts its own tests (its last line is "RESULT passed failed
# skipped"); a program that crashes or prints no RESULT line counts as one
# failure. A program may be a shell script (NAME.sh, run by sh: the tests in
# tests/scripts). The compile checks are read from BUILD_DIR/compile-checks.txt.
build=$1
shift
passed=0
failed=0
skipped=0
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-test.XXXXXX")
export TEST_TMP
for program in "$@"; do
    name=$(basename "$program")
    echo "== $name"
    case $program in
    *.sh) output=$(sh "$program" 2>&1) ;;
    *) output=$("$program" 2>&1) ;;
    esac
    status=$?
    printf '%s\n' "$output" | grep -v '^RESULT '
    result=$(printf '%s\n' "$output" | grep '^RESULT ' | tail -n 1)
    if [ -n "$result" ]; then
        set -- $result
        passed=$((passed + $2))
        failed=$((failed + $3))
        skipped=$((skipped + ${4:-0}))
        if [ "$status" -ne 0 ] && [ "$3" -eq 0 ]; then
            echo "FAIL $name exited with status $status"
            failed=$((failed + 1))
        fi
    else
        echo "FAIL $name ended without a result (status $status)"
        failed=$((failed + 1))
    fi
done
# compile checks recorded by the Makefile: one line "ok NAME", "FAIL NAME"
# or "skip NAME: why" each
if [ -f "$build/compile-checks.txt" ]; then
    echo "== compile checks"
    cat "$build/compile-checks.txt"
    passed=$((passed + $(grep -c '^ok ' "$build/compile-checks.txt")))
    failed=$((failed + $(grep -c '^FAIL ' "$build/compile-checks.txt")))
    skipped=$((skipped + $(grep -c '^skip ' "$build/compile-checks.txt")))
fi
rm -rf "$TEST_TMP"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
