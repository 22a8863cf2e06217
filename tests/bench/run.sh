#!/bin/sh
# run.sh - what `make bench` runs: trains the same models on the same data
# with cnn.h (bench.c) and, when Debian's python3-torch is installed, with
# PyTorch (bench_torch.py), and prints one table of medians. README.md,
# "Benchmark", says how to read it.
#
#   sh tests/bench/run.sh DIR DATA.csv
#   sh tests/bench/run.sh DIR IMAGES.idx LABELS.idx
#
# DIR holds the program built from bench.c (DIR/bench); every result line
# goes to DIR/results.txt. Environment:
#   BENCH_SCALE    multiplies the samples trained per run (default 1; 0.1 for
#                  a quick look, whose figures are rougher)
#   BENCH_REPEATS  runs of each program per row (default 3; the table shows
#                  medians)
#   BENCH_PYTHON   the Python that has torch (default /usr/bin/python3)
#   BENCH_TORCH_ENV  settings added to (or replacing) PyTorch's below, to try
#                  another configuration; a value n is the row's thread count,
#                  e.g. BENCH_TORCH_ENV="OPENBLAS_NUM_THREADS=n"
#
# The two programs take turns on each row, and which goes first alternates,
# so that a slow spell of the machine falls on both alike. PyTorch runs the
# conv models twice in each turn, once in each memory layout (NCHW, and
# channels_last: NHWC), and the table keeps the better figures of the two:
# which is faster depends on the model, the batch and the machine.
#
# Then the busy rows: LeNet-5 at batch 256 on 1 and 2 threads again, the
# same way, while `bench spin` keeps one core busy as another program would.
# It runs only during those rows; after each of their runs run.sh checks that
# it still runs, and stops with an error if not, as those figures would not
# be what they claim. The footer compares cnn.h's 2 threads there with its 1
# thread and with PyTorch's 2 threads.
#
# Each result line names the instruction set its program ran: cnn.h's
# kernels (avx512, avx2, sse2...; CNN_MAX_ISA caps them) and PyTorch's CPU
# capability (AVX512, AVX2...). `bench peak` measures the FP32 peak in
# cnn.h's set, and the footer names both.
set -u
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: sh tests/bench/run.sh DIR DATA.csv | DIR IMAGES.idx LABELS.idx" >&2
    exit 2
fi
dir=$1
images=$2
labels=${3:-}
bench=$dir/bench
here=$(dirname "$0")
python=${BENCH_PYTHON:-/usr/bin/python3}
scale=${BENCH_SCALE:-1}
repeats=${BENCH_REPEATS:-3}
results=$dir/results.txt
errors=$dir/errors.txt

# model, batch, samples per run at BENCH_SCALE=1. Chosen so that one run
# takes a few seconds here (2-core AMD EPYC): long enough for a steady rate,
# short enough for the whole table, busy rows included, in 10 to 15 minutes.
busy_config="lenet5 256 40960" # the busy rows' too, with one core taken
configs="lenet5 32 32000
$busy_config
cnn 256 1024
mlp 256 40960"
thread_counts="1 2"

# PyTorch's best configuration on this kind of machine: its OpenMP pool of n
# threads, and OpenBLAS on one thread inside each of them. OpenBLAS's own
# threads would otherwise compete with the OpenMP threads for the same cores:
# on 2 threads here, OPENBLAS_NUM_THREADS=2 and the OpenMP build of OpenBLAS
# (libopenblas0-openmp) both trained the seed MLP slower than this; on 1
# thread the two builds of OpenBLAS were equal.
torch_env() { # THREADS (later settings of a name win, as with env)
    for setting in OMP_NUM_THREADS=n MKL_NUM_THREADS=n OPENBLAS_NUM_THREADS=1 ${BENCH_TORCH_ENV:-}; do
        case $setting in
        *=n) printf '%s ' "${setting%=n}=$1" ;;
        *) printf '%s ' "$setting" ;;
        esac
    done
}

if [ ! -x "$bench" ]; then
    echo "run.sh: no $bench (make bench builds it)" >&2
    exit 1
fi
if "$python" -c 'import torch' >/dev/null 2>&1; then
    have_torch=1
else
    have_torch=0
    echo "PyTorch not found ($python cannot import torch; Debian: apt-get install python3-torch):"
    echo "the PyTorch columns stay empty."
fi
: >"$results"
: >"$errors"
load_before=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')

peak_line=$("$bench" peak) || { echo "run.sh: $bench peak failed" >&2; exit 1; }
echo "$peak_line" >>"$results"

state=normal  # busy during the busy rows, while $spinner spins
spinner=      # the process id of `bench spin`, while it runs
busy_runs=0   # the busy runs after which it was found still running

# Runs one program once; keeps its RESULT line, tagged with the thread count
# asked for and the state, and prints its rate. Failures are reported and
# counted, not fatal; a busy run that ends without the spinner is fatal.
run_one() { # IMPL THREADS MODEL BATCH SAMPLES (IMPL: cnn.h, or pytorch:LAYOUT)
    impl=$1 threads=$2 name=cnn.h
    shift 2
    if [ "$impl" = cnn.h ]; then
        set -- env OMP_NUM_THREADS="$threads" "$bench" "$1" "$2" "$3" "$threads"
    else
        layout=${impl#pytorch:}
        name=PyTorch
        [ "$layout" = channels_last ] && name="PyTorch NHWC"
        # shellcheck disable=SC2046 # torch_env's words are separate settings
        set -- env $(torch_env "$threads") BENCH_TORCH_LAYOUT="$layout" "$python" "$here/bench_torch.py" "$1" "$2" "$3" "$threads"
    fi
    if [ -n "$labels" ]; then set -- "$@" "$images" "$labels"; else set -- "$@" "$images"; fi
    if output=$("$@" </dev/null 2>"$dir/stderr.txt") && line=$(echo "$output" | grep '^RESULT '); then
        echo "asked=$threads state=$state $line" >>"$results"
        rate=$(echo "$line" | sed 's/.*samples_per_s=\([^ ]*\).*/\1/')
        printf ' %s %s/s' "$name" "$rate"
    else
        printf ' %s FAILED' "$name"
        { echo "$*"; cat "$dir/stderr.txt"; } >>"$errors"
    fi
    if [ "$state" = busy ]; then
        # the shell has waited for the run, which reaps a spinner that died
        if ! kill -0 "$spinner" 2>/dev/null; then
            echo
            echo "run.sh: $bench spin (process $spinner) had stopped by the end of this busy run: no table" >&2
            spinner=
            exit 1
        fi
        busy_runs=$((busy_runs + 1))
    fi
}

# Runs one model and batch on each thread count, REPEATS turns of each.
run_rows() { # MODEL BATCH SAMPLES (at BENCH_SCALE=1)
    model=$1 batch=$2 label=$1
    [ "$state" = busy ] && label="busy: $model"
    # scaled, rounded to whole batches, at least one
    samples=$(awk -v s="$3" -v k="$scale" -v b="$batch" 'BEGIN { n = int(s * k / b + 0.5); if (n < 1) n = 1; print n * b }')
    peers="pytorch:contiguous" # the MLP has no conv, so no layout to choose
    [ "$model" = mlp ] || peers="pytorch:contiguous pytorch:channels_last"
    reversed=$(echo "$peers" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
    for threads in $thread_counts; do
        rep=1
        while [ "$rep" -le "$repeats" ]; do
            printf '%s batch %s, threads %s, %s samples, run %s of %s:' "$label" "$batch" "$threads" "$samples" "$rep" "$repeats"
            if [ "$have_torch" = 0 ]; then
                run_one cnn.h "$threads" "$model" "$batch" "$samples"
            elif [ $((rep % 2)) = 1 ]; then
                run_one cnn.h "$threads" "$model" "$batch" "$samples"
                for peer in $peers; do run_one "$peer" "$threads" "$model" "$batch" "$samples"; done
            else
                for peer in $reversed; do run_one "$peer" "$threads" "$model" "$batch" "$samples"; done
                run_one cnn.h "$threads" "$model" "$batch" "$samples"
            fi
            echo
            rep=$((rep + 1))
        done
    done
}

echo "$configs" | while read -r model batch samples; do
    run_rows "$model" "$batch" "$samples"
done
load_before_busy=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')

# The busy rows, in this shell (not a pipeline's subshell) so that a
# stopped spinner ends the script. The spinner is stopped when the rows
# are done, and on any exit before: a hangup, an interrupt or a TERM runs
# exit, and exit runs stop_spinner. (A spinner that outlives a run.sh killed
# with SIGKILL ends by itself: see bench.c.)
stop_spinner() {
    if [ -n "$spinner" ]; then
        kill "$spinner" 2>/dev/null
        wait "$spinner" 2>/dev/null
        spinner=
    fi
}
trap stop_spinner EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
"$bench" spin </dev/null >/dev/null 2>&1 &
spinner=$!
state=busy
# shellcheck disable=SC2086 # its words are run_rows' arguments
run_rows $busy_config
echo "BUSY spinner=$spinner alive_after_runs=$busy_runs" >>"$results"
state=normal
stop_spinner

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
echo
awk -v cpu="${cpu:-unknown CPU}" -v cores="$cores" -v have_torch="$have_torch" -v repeats="$repeats" \
    -v data="$images${labels:+ + $labels}" -v torch_env="$(torch_env n)" \
    -v load_before="$load_before" -v load_before_busy="$load_before_busy" -v errors="$errors" '
# key=value pairs of one line into the array f
function fields(line, f,    n, i, words, eq) {
    split("", f)
    n = split(line, words, " ")
    for (i = 1; i <= n; i++) {
        eq = index(words[i], "=")
        if (eq > 0) f[substr(words[i], 1, eq - 1)] = substr(words[i], eq + 1)
    }
}
# median of the values collected under key k (count[k] of them, in v[k, 1..])
function median(k,    n, i, j, x, a) {
    n = count[k]
    if (n == 0) return ""
    for (i = 1; i <= n; i++) a[i] = v[k, i] + 0
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, x) { count[k]++; v[k, count[k]] = x }
function num(x, format) { return x == "" ? "-" : sprintf(format, x) }
function times(a, b) { return a == "" || b == "" || b == 0 ? "-" : sprintf("%.2fx", a / b) }
function name(model) { return model == "cnn" ? "seed CNN" : model == "mlp" ? "seed MLP" : model == "busy" ? "busy" : "LeNet-5" }
/^PEAK / { fields($0, f); peak = f["gflops_per_core"]; peak_isa = f["isa"]; peak_loop = f["loop"]; next }
/^BUSY / { fields($0, f); busy_runs = f["alive_after_runs"]; next }
/^asked=/ {
    fields($0, f)
    # the busy rows are rows of their own, whose model cell says busy
    if (f["state"] == "busy") { busy_model = f["model"]; busy_batch = f["batch"] }
    row = (f["state"] == "busy" ? "busy" : f["model"]) SUBSEP f["batch"] SUBSEP f["asked"]
    if (!(row in seen)) { seen[row] = 1; rows[++row_count] = row }
    impl = f["impl"]
    if (impl == "pytorch") {
        impl = impl ":" f["layout"]
        if (!((row, impl) in peer_seen)) { peer_seen[row, impl] = 1; peers[row] = peers[row] " " impl }
        torch_version = f["torch"]; blas = f["blas"]; torch_isa = f["isa"]
    } else {
        flops[row] = f["flops_per_sample"]; used[row] = f["threads"]
        if (!(f["isa"] in isa_seen)) { isa_seen[f["isa"]] = 1; isas = isas (isas == "" ? "" : ", ") f["isa"] }
    }
    add(row SUBSEP impl SUBSEP "rate", f["samples_per_s"])
    add(row SUBSEP impl SUBSEP "latency", f["latency_us"])
    add(row SUBSEP impl SUBSEP "rss", f["maxrss_kb"] / 1024)
}
# PyTorch on the row: its best layout by samples/s into best_layout, and
# the best of its layouts in each column into t (rate), tl, trss
function pytorch_best(row,    n, i, list, x) {
    t = tl = trss = best_layout = ""
    n = split(peers[row], list, " ")
    for (i = 1; i <= n; i++) {
        x = median(row SUBSEP list[i] SUBSEP "rate")
        if (x != "" && (t == "" || x > t)) { t = x; best_layout = list[i] }
        x = median(row SUBSEP list[i] SUBSEP "latency")
        if (x != "" && (tl == "" || x < tl)) tl = x
        x = median(row SUBSEP list[i] SUBSEP "rss")
        if (x != "" && (trss == "" || x < trss)) trss = x
    }
    sub(/^pytorch:/, "", best_layout)
    best_layout = best_layout == "channels_last" ? "NHWC" : best_layout == "contiguous" ? "NCHW" : "-"
}
END {
    sub(/ +$/, "", torch_env)
    print "| model | batch | threads | cnn.h samples/s | PyTorch samples/s | PyTorch layout | ratio | cnn.h GFLOP/s | of peak | cnn.h latency µs | PyTorch latency µs | ratio | cnn.h RSS MB | PyTorch RSS MB |"
    print "|---|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (r = 1; r <= row_count; r++) {
        row = rows[r]
        split(row, key, SUBSEP)
        c = median(row SUBSEP "cnn.h" SUBSEP "rate"); cl = median(row SUBSEP "cnn.h" SUBSEP "latency")
        pytorch_best(row)
        gflops = c == "" ? "" : c * flops[row] * 1e-9
        share = gflops == "" || peak == "" ? "" : 100 * gflops / (peak * used[row])
        threads = key[3] (used[row] != "" && used[row] != key[3] ? " (cnn.h " used[row] ")" : "")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", \
            name(key[1]), key[2], threads, \
            num(c, "%.0f"), num(t, "%.0f"), best_layout, times(c, t), num(gflops, "%.1f"), num(share, "%.0f%%"), \
            num(cl, "%.0f"), num(tl, "%.0f"), times(tl, cl), \
            num(median(row SUBSEP "cnn.h" SUBSEP "rss"), "%.1f"), num(trss, "%.0f")
        if (key[1] == "busy") {
            if (key[3] == 1) busy_one = c
            else if (key[3] == 2) { busy_two = used[row] == 2 ? c : ""; busy_torch_two = t }
        } else if (key[3] == 1) one[key[1] SUBSEP key[2]] = c
        else if (key[3] == 2 && used[row] == 2 && one[key[1] SUBSEP key[2]] != "" && c != "")
            speedup = speedup sprintf("%s%s/%s %.2fx", speedup == "" ? "" : ", ", name(key[1]), key[2], c / one[key[1] SUBSEP key[2]])
    }
    print ""
    runs = repeats == 1 ? "One run" : "Medians of " repeats " runs"
    print runs " of each program per row" (have_torch == 1 ? ", the two taking turns" : "") ". ratio: cnn.h samples/s"
    print "over PyTorch'\''s (above 1: cnn.h trains faster); latency ratio: PyTorch'\''s latency over cnn.h'\''s"
    print "(above 1: cnn.h answers sooner). GFLOP/s: the conv and dense work training needs; of peak:"
    print "of the measured FP32 peak times the threads cnn.h used. PyTorch ran the conv models in both"
    print "memory layouts, NCHW and channels_last (NHWC); each PyTorch column is the better of the two"
    print "(highest samples/s, lowest latency, lowest RSS), and PyTorch layout is the faster in samples/s."
    if (speedup != "") print "cnn.h, 2 threads over 1 thread (samples/s): " speedup
    if (busy_model != "") {
        print "busy: " name(busy_model) " at batch " busy_batch " again, while bench spin kept one core busy (it was running after"
        print "each of the " busy_runs " busy runs). There, cnn.h 2 threads over its 1 thread: " times(busy_two, busy_one) \
            "; cnn.h 2 threads over PyTorch 2 threads: " times(busy_two, busy_torch_two) "."
    }
    print "Machine: " cpu ", " cores " cores; FP32 peak " num(peak, "%.1f") " GFLOP/s per core in " peak_isa ", cnn.h'\''s instruction set (" peak_loop " loop)."
    print "cnn.h: " (isas == "" ? "-" : isas) " kernels" \
        (have_torch == 1 ? "; PyTorch: CPU capability " (torch_isa == "" ? "-" : torch_isa) " (its ATen kernels; oneDNN and OpenBLAS pick their own)" : "") "."
    print "Data: the first 4096 samples of " data "."
    if (have_torch == 1)
        print "PyTorch " torch_version " (BLAS: " blas "), torch.set_num_threads(n) with " torch_env "."
    if (blas == "reference")
        print "WARNING: PyTorch ran on the reference BLAS, far slower than its usual OpenBLAS (Debian: apt-get install libopenblas0-pthread)."
    print "Load average (1 min) before the rows: " load_before ", before the busy rows: " load_before_busy " (other work on the machine slows both, and 2 threads most)."
    if ((getline line < errors) > 0) print "Some runs FAILED: see " errors "."
}' "$results"
[ ! -s "$errors" ] # a failed run fails `make bench`, after the table
