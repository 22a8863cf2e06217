#!/bin/sh
# What the project's own files promise, read from the files themselves:
# every gunzip in the Makefile and the scripts writes a temporary name and
# renames it (a failed one leaves no file a later run would trust); every
# script that installs packages updates apt's lists first; and README.md
# speaks to users (no path inside the project's own machinery), names what
# `make test` needs (each package `tests/deps.sh build test` may install),
# where to download EMNIST, and documents the examples and `make install`;
# and the compile checks cover every example with MinGW-w64.
# (Running a gunzip that fails inside `make demo` or .ci/run would need
# Debian's Fashion-MNIST package or the project's shared EMNIST copy, so
# these are read, not run.)
. "$(dirname "$0")/lib.sh"

scripts=$(echo Makefile .ci/run; find tests examples -name '*.sh' | sort)

unpacking_is_atomic() {
    # shellcheck disable=SC2086 # one word a file
    bad=$(awk '
        /^[ \t]*#/ { next }
        match($0, /(gunzip -c|gzip -dc|gzip -cd|zcat )/) {
            rest = substr($0, RSTART)
            if (!match(rest, />[ \t]*"?[^ \t"|;&)]+"?/)) next   # not into a file
            target = substr(rest, RSTART + 1, RLENGTH - 1)
            gsub(/[ \t"]/, "", target)
            if (target !~ /\.tmp$/) { print FILENAME ":" FNR ": unpacks straight into " target; next }
            pending[FILENAME ":" FNR] = target
        }
        { for (at in pending) {   # the rename: on the same line or one of the next two
              split(at, where, ":")
              if (where[1] != FILENAME || FNR - where[2] > 2) continue
              if ((m = index($0, "mv ")) && index(substr($0, m), pending[at])) delete pending[at]
          } }
        END { for (at in pending) print at ": unpacks into " pending[at] " but never renames it" }
    ' $scripts)
    [ -z "$bad" ] || fail "$bad"
}

apt_updates_before_installing() {
    # apt-get as a command (at a line's start or after ; & | then do, maybe
    # through sudo or $sudo), not in a comment or a message
    command='(^|[;&|]|then|do)[ \t]*(sudo |\$[a-z_]+ )?apt-get ([-a-zA-Z]+ )*'
    # shellcheck disable=SC2086
    for file in $scripts; do
        install=$(grep -nE "${command}install" "$file" | head -n 1 | cut -d: -f1)
        [ -n "$install" ] || continue
        update=$(grep -nE "${command}update" "$file" | head -n 1 | cut -d: -f1)
        [ -n "$update" ] && [ "$update" -lt "$install" ] || fail "$file:$install: apt-get install without an apt-get update before it"
    done
}

readme_has_no_internal_paths() {
    if grep -n '\.\./shared' README.md; then fail "README.md names ../shared, a path inside the project's machinery"; fi
}

readme_says_what_a_user_needs() {
    # every package deps.sh's build and test tasks may install
    packages=$(awk '
        /^    [a-z]+\)$/ { task = $1; sub(/\)$/, "", task) }
        task == "build" || task == "test" { while (match($0, /want [a-z0-9.+-]+/)) { print substr($0, RSTART + 5, RLENGTH - 5); $0 = substr($0, RSTART + RLENGTH) } }
        /;;/ { task = "" }' tests/deps.sh | sort -u)
    [ -n "$packages" ] || fail "no package found in tests/deps.sh's build and test tasks"
    for package in $packages; do
        grep -q "\`$package\`" README.md || fail "README.md does not name \`$package\`, which 'make deps' installs"
    done
    grep -q 'https://www.kaggle.com/datasets/crawford/emnist' README.md || fail "README.md gives no Kaggle link for EMNIST"
    grep -q 'examples/summary.c' README.md || fail "README.md does not document examples/summary.c"
    grep -q 'make install' README.md || fail "README.md does not document make install"
    grep -q 'pkg-config --cflags --libs cnn' README.md || fail "README.md does not say how to build with pkg-config"
}

# tests/compile/run.sh cross-compiles cnn.h and each example with MinGW-w64
# when it is installed (one line mingw_NAME each), else says it skipped
mingw_checks_name_every_example() {
    checks=$BUILD/compile-checks.txt
    [ -f "$checks" ] || { skip "no $checks (make $checks)"; return; }
    if ! command -v "${MINGW_CC:-x86_64-w64-mingw32-gcc}" >/dev/null 2>&1; then
        grep -q '^skip mingw: ' "$checks" || fail "no MinGW here, and $checks does not say it skipped its checks"
        return
    fi
    grep -Eq '^(ok  |FAIL) mingw_c99_werror$' "$checks" || fail "$checks: no mingw_c99_werror (cnn.h linked by MinGW)"
    for example in examples/*.c; do
        program=$(basename "$example" .c)
        grep -Eq "^(ok  |FAIL) mingw_$program\$" "$checks" || fail "$checks: no mingw_$program"
    done
}

run unpacking_is_atomic
run apt_updates_before_installing
run readme_has_no_internal_paths
run readme_says_what_a_user_needs
run mingw_checks_name_every_example
report
