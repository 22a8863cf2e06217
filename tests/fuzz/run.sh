#!/bin/sh
# What `make fuzz` runs: each libFuzzer target in turn for SECONDS, from the
# seeds in DIR/seeds/TARGET, keeping what it finds in DIR/corpus/TARGET and
# an input that crashes in DIR/crash-TARGET-*. Stops at the first crash,
# with the end of that target's log, and exits 1.
#   sh tests/fuzz/run.sh DIR SECONDS TARGET...    (DIR/fuzz_TARGET: the programs)
dir=$1
seconds=$2
shift 2
for t in "$@"; do
    echo "== fuzz_$t for $seconds s"
    mkdir -p "$dir/corpus/$t"
    "$dir/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$dir/crash-$t-" \
        "$dir/corpus/$t" "$dir/seeds/$t" 2>"$dir/fuzz_$t.log" || { tail -n 40 "$dir/fuzz_$t.log"; exit 1; }
    grep -E '^stat::number_of_executed_units|^Done' "$dir/fuzz_$t.log"
done
