#!/bin/sh
# The training examples as a user runs them (issue "first hour", items 2 to
# 5 and 16): lenet5 reports progress with the library's reporter, stores
# class names that predict then uses from any folder, refuses a mapping of
# the wrong size, names the file in a data error, and --resume in lenet5,
# mlp, cnn and resnet continues to the very weights that training straight
# gives. resnet trains and prints its test accuracy last; cnn --batch-norm
# trains a model with batch norm layers; and --eval MODEL --test DATA of
# mlp, cnn, resnet and folders gives the test accuracy training printed.
. "$(dirname "$0")/lib.sh"

# A 28x28 binary PGM (which stb_image reads) of row $2 of CSV file $1,
# upright (EMNIST stores its images transposed).
row_picture() { # csv row file
    { printf 'P5\n28 28\n255\n'
      sed -n "$2p" "$1" | LC_ALL=C awk -F, '{
          for (y = 0; y < 28; y++) for (x = 0; x < 28; x++) printf "%c", $(2 + x * 28 + y) }'
    } >"$3"
}

# Tiny IDX files: $2 images of 28x28 with labels 0..9 in turn, as
# train-images-idx3-ubyte and train-labels-idx1-ubyte in folder $1.
tiny_idx() { # folder count
    LC_ALL=C awk -v n="$2" 'BEGIN {
        printf "%c%c%c%c", 0, 0, 8, 3
        printf "%c%c%c%c%c%c%c%c%c%c%c%c", 0, 0, int(n / 256), n % 256, 0, 0, 0, 28, 0, 0, 0, 28
        srand(3)
        for (i = 0; i < n * 784; i++) printf "%c", int(200 * rand())
    }' >"$1/train-images-idx3-ubyte"
    LC_ALL=C awk -v n="$2" 'BEGIN {
        printf "%c%c%c%c%c%c%c%c", 0, 0, 8, 1, 0, 0, int(n / 256), n % 256
        for (i = 0; i < n; i++) printf "%c", i % 10
    }' >"$1/train-labels-idx1-ubyte"
}

need() { for program in "$@"; do [ -x "$BUILD/$program" ] || { fail "$BUILD/$program is not built"; return 1; }; done; }

# Item 3 and 4: names from the mapping beside the training file go into the
# model; predict prints them, from another folder, with no mapping given.
names_travel_with_the_model() {
    need lenet5 predict || return
    dir=$(scratch names)
    small_csv train 300 "$dir/train.csv"
    cp data/emnist-balanced-mapping.txt "$dir/"
    "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --epochs 1 --batch 64 \
        --model "$dir/m.cnn" >"$dir/log" 2>&1 || { sed 's/^/    | /' "$dir/log"; fail "lenet5 failed"; return; }
    row_picture "$dir/train.csv" 1 "$dir/one.pgm"
    (cd "$TEST_TMP" && "$ROOT/$BUILD/predict" "$dir/m.cnn" "$dir/one.pgm") >"$dir/predict" 2>&1 ||
        { sed 's/^/    | /' "$dir/predict"; fail "predict failed away from the repository"; return; }
    # "  A   12.34%   (class 10)": a name, never "class N", in every line
    lines=$(grep -c '^  .  *[0-9.]*%   (class [0-9]*)$' "$dir/predict")
    [ "$lines" -eq 5 ] || { sed 's/^/    | /' "$dir/predict"; fail "expected 5 named lines, found $lines"; }
    first=$(sed -n '2p' "$dir/predict" | awk '{ print $1 }')
    class=$(sed -n '2s/.*(class \([0-9]*\))$/\1/p' "$dir/predict")
    code=$(awk -v c="$class" '$1 == c { print $2 }' data/emnist-balanced-mapping.txt)
    want=$(awk -v c="$code" 'BEGIN { printf "%c", c }')
    [ "$first" = "$want" ] || fail "class $class printed as '$first', the mapping says '$want'"
    # a mapping of another size is refused, naming both
    head -n 10 data/emnist-balanced-mapping.txt >"$dir/ten.txt"
    if "$BUILD/predict" --mapping "$dir/ten.txt" "$dir/m.cnn" "$dir/one.pgm" >"$dir/log" 2>&1; then
        fail "a 10-class mapping accepted for a 47-class model"
    fi
    grep -q "maps 10 labels but the model '$dir/m.cnn' has 47 classes" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no clear message"; }
}

# Item 3: IDX data (the Fashion-MNIST path of make demo) with --names.
names_given_on_the_command_line() {
    need lenet5 predict || return
    dir=$(scratch fashion)
    tiny_idx "$dir" 200
    "$BUILD/lenet5" --train-idx "$dir/train-images-idx3-ubyte" "$dir/train-labels-idx1-ubyte" \
        --test-idx "$dir/train-images-idx3-ubyte" "$dir/train-labels-idx1-ubyte" --epochs 1 --batch 50 \
        --names "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot" --model "$dir/m.cnn" >"$dir/log" 2>&1 ||
        { sed 's/^/    | /' "$dir/log"; fail "lenet5 failed"; return; }
    { printf 'P5\n28 28\n255\n'; LC_ALL=C awk 'BEGIN { for (i = 0; i < 784; i++) printf "%c", (i % 28 > 8 && i % 28 < 20) ? 30 : 230 }'; } \
        >"$dir/dress.pgm"
    "$BUILD/predict" "$dir/m.cnn" "$dir/dress.pgm" >"$dir/predict" 2>&1 || { sed 's/^/    | /' "$dir/predict"; fail "predict failed"; return; }
    grep -q '^  Ankle boot  ' "$dir/predict" || grep -q '^  T-shirt/top ' "$dir/predict" || grep -q '^  Dress  ' "$dir/predict" ||
        { sed 's/^/    | /' "$dir/predict"; fail "no Fashion-MNIST names in predict's answer"; }
    # a wrong count of names is refused
    if "$BUILD/lenet5" --train-idx "$dir/train-images-idx3-ubyte" "$dir/train-labels-idx1-ubyte" \
        --test-idx "$dir/train-images-idx3-ubyte" "$dir/train-labels-idx1-ubyte" --epochs 1 --names "a,b" --model "$dir/x.cnn" \
        >"$dir/log" 2>&1; then fail "2 names accepted for 10 classes"; fi
    grep -q "2 class names given for a model with 10 classes" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no clear message"; }
}

# Item 5: a data error names its file, so train and test can be told apart.
data_errors_name_the_file() {
    need lenet5 || return
    dir=$(scratch errors)
    small_csv train 20 "$dir/good.csv"
    { head -n 6 "$dir/good.csv"; sed -n '7s/^\([0-9]*\),[0-9]*/\1,0a/p' "$dir/good.csv"; } >"$dir/bad.csv"
    if "$BUILD/lenet5" --train "$dir/good.csv" --test "$dir/bad.csv" --epochs 1 >"$dir/log" 2>&1; then fail "a bad test file accepted"; fi
    grep -q "lenet5: '$dir/bad.csv', line 7, field 2: unexpected character 'a'" "$dir/log" ||
        { sed 's/^/    | /' "$dir/log"; fail "the message does not name the file, line and field"; }
}

# Item 2: the library's reporter: a line per epoch, and on a terminal the
# bar with samples/s and the time left (a pseudo-terminal made by script(1)).
lenet5_shows_progress() {
    need lenet5 || return
    dir=$(scratch progress)
    small_csv train 600 "$dir/train.csv"
    "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --epochs 2 --batch 32 --model "$dir/m.cnn" \
        >"$dir/log" 2>&1 || { sed 's/^/    | /' "$dir/log"; fail "lenet5 failed"; return; }
    grep -q '^epoch  2/2  loss [0-9.]*  acc  *[0-9.]*%  [0-9.]* s$' "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no epoch lines"; }
    if ! command -v script >/dev/null 2>&1; then skip "no script(1) to make a terminal"; return; fi
    script -qec "'$ROOT/$BUILD/lenet5' --train '$dir/train.csv' --test '$dir/train.csv' --classes 47 --epochs 1 --batch 8 --model '$dir/t.cnn'" \
        /dev/null >"$dir/tty" 2>&1
    grep -q 'samples/s ETA [0-9]*:[0-9][0-9]' "$dir/tty" || { sed 's/^/    | /' "$dir/tty"; fail "no progress bar on a terminal"; }
}

# Item 16: N epochs straight and N-1 + --resume 1 give the same model file,
# byte for byte (the weights, the names and so the CRC).
resume_gives_the_same_weights() { # program epochs-args...
    dir=$(scratch "resume-$1")
    small_csv train 400 "$dir/train.csv"
    cp data/emnist-balanced-mapping.txt "$dir/"
    case $1 in
    lenet5)
        "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --batch 64 --epochs 3 --model "$dir/straight.cnn" \
            >"$dir/log1" 2>&1 &&
        "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --batch 64 --epochs 2 --model "$dir/half.cnn" \
            >"$dir/log2" 2>&1 &&
        "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --batch 64 --epochs 3 --model "$dir/resumed.cnn" \
            --resume "$dir/half-checkpoint.cnn" >"$dir/log3" 2>&1 || { cat "$dir"/log* | sed 's/^/    | /'; fail "lenet5 failed"; return; }
        straight=$dir/straight.cnn resumed=$dir/resumed.cnn ;;
    *)
        extra=
        case $1 in cnn | resnet) extra="--lr-decay 0.5 --decay-after 1 --shift 0.1 --rotate 10" ;; esac
        "$BUILD/$1" --train "$dir/train.csv" --test "$dir/train.csv" --epochs 2 --out "$dir/straight" $extra >"$dir/log1" 2>&1 &&
        "$BUILD/$1" --train "$dir/train.csv" --test "$dir/train.csv" --epochs 1 --out "$dir/half" $extra >"$dir/log2" 2>&1 &&
        "$BUILD/$1" --train "$dir/train.csv" --test "$dir/train.csv" --epochs 2 --out "$dir/resumed" $extra \
            --resume "$dir/half/checkpoint.cnn" >"$dir/log3" 2>&1 || { cat "$dir"/log* | sed 's/^/    | /'; fail "$1 failed"; return; }
        straight=$dir/straight/model.cnn resumed=$dir/resumed/model.cnn ;;
    esac
    grep -q "^resuming from .* after epoch" "$dir/log3" || fail "no word of resuming"
    cmp -s "$straight" "$resumed" || fail "$1: the resumed model differs from the one trained straight through"
}

lenet5_resumes() { need lenet5 && resume_gives_the_same_weights lenet5; }
mlp_resumes() { need mlp && resume_gives_the_same_weights mlp; }
cnn_resumes() { need cnn && resume_gives_the_same_weights cnn; }
resnet_resumes() { need resnet && resume_gives_the_same_weights resnet; } # batch norm's running estimates too

# The last line of a log, when it is "test accuracy: N.NN%"; else nothing.
test_accuracy() { tail -n 1 "$1" | grep -x 'test accuracy: [0-9]*\.[0-9][0-9]%'; }

# A seed program trained for one epoch on a small CSV prints its test
# accuracy last; --eval of the model it saved, on the same test file, prints
# the same accuracy last. Further arguments: more options for training.
# Leaves its folder in dir; returns 1 when it could not compare.
eval_gives_the_training_accuracy() { # program [options]
    program=$1
    shift
    dir=$(scratch "eval-$program")
    small_csv train 300 "$dir/train.csv"
    small_csv test 200 "$dir/test.csv"
    "$BUILD/$program" --train "$dir/train.csv" --test "$dir/test.csv" --epochs 1 --out "$dir/out" "$@" >"$dir/train.log" 2>&1 ||
        { sed 's/^/    | /' "$dir/train.log"; fail "$program failed"; return 1; }
    trained=$(test_accuracy "$dir/train.log") || { tail -n 3 "$dir/train.log" | sed 's/^/    | /'; fail "$program: no 'test accuracy: N%' last"; return 1; }
    "$BUILD/$program" --eval "$dir/out/model.cnn" --test "$dir/test.csv" >"$dir/eval.log" 2>&1 ||
        { sed 's/^/    | /' "$dir/eval.log"; fail "$program --eval failed"; return 1; }
    evaluated=$(test_accuracy "$dir/eval.log") || { tail -n 3 "$dir/eval.log" | sed 's/^/    | /'; fail "$program --eval: no 'test accuracy: N%' last"; return 1; }
    [ "$trained" = "$evaluated" ] || fail "$program: training printed '$trained', --eval '$evaluated'"
}

mlp_eval_gives_the_training_accuracy() { need mlp && eval_gives_the_training_accuracy mlp; }
cnn_eval_gives_the_training_accuracy() { need cnn && eval_gives_the_training_accuracy cnn; }

# resnet: batch norm, residual blocks and global average pooling, trained
# on a tiny CSV; the saved model (as --eval prints it) has them all.
resnet_trains_and_eval_gives_its_accuracy() {
    need resnet && eval_gives_the_training_accuracy resnet || return
    for layer in batch_norm residual_begin 'residual_end + conv 1x1 s2' global_avg_pool; do
        grep -q "^ *$layer " "$dir/eval.log" || { sed 's/^/    | /' "$dir/eval.log"; fail "no $layer in the saved model's summary"; return; }
    done
}

# cnn --batch-norm: a batch norm after each of the four convs, in the model
# it trains and saves.
cnn_batch_norm_trains() {
    need cnn && eval_gives_the_training_accuracy cnn --batch-norm || return
    for log in train eval; do
        count=$(grep -c '^batch_norm ' "$dir/$log.log")
        [ "$count" -eq 4 ] || { sed 's/^/    | /' "$dir/$log.log"; fail "$log: $count batch_norm layers in the summary, want 4"; }
    done
}

# folders --test FOLDER after training, then --eval MODEL --test FOLDER:
# the same accuracy, on every image of the tree, last.
folders_eval_gives_the_training_accuracy() {
    need folders || return
    dir=$(scratch eval-folders)
    "$BUILD/folders" --generate "$dir/shapes" 6 >"$dir/log" 2>&1 || { sed 's/^/    | /' "$dir/log"; fail "folders --generate failed"; return; }
    "$BUILD/folders" "$dir/shapes" --epochs 1 --model "$dir/m.cnn" --test "$dir/shapes" >"$dir/train.log" 2>&1 ||
        { sed 's/^/    | /' "$dir/train.log"; fail "folders failed"; return; }
    trained=$(test_accuracy "$dir/train.log") || { tail -n 3 "$dir/train.log" | sed 's/^/    | /'; fail "folders: no 'test accuracy: N%' last"; return; }
    grep -q '^test: 18 images of 3x32x32 in ' "$dir/train.log" || { sed 's/^/    | /' "$dir/train.log"; fail "folders --test: not every image"; }
    "$BUILD/folders" --eval "$dir/m.cnn" --test "$dir/shapes" >"$dir/eval.log" 2>&1 ||
        { sed 's/^/    | /' "$dir/eval.log"; fail "folders --eval failed"; return; }
    evaluated=$(test_accuracy "$dir/eval.log") || { tail -n 3 "$dir/eval.log" | sed 's/^/    | /'; fail "folders --eval: no 'test accuracy: N%' last"; return; }
    [ "$trained" = "$evaluated" ] || fail "folders: training printed '$trained', --eval '$evaluated'"
    # a test folder with a class the model does not know is refused, naming it
    mkdir -p "$dir/other/hexagon" && cp "$(find "$dir/shapes/circle" -type f | head -n 1)" "$dir/other/hexagon/"
    if "$BUILD/folders" --eval "$dir/m.cnn" --test "$dir/other" >"$dir/log" 2>&1; then fail "a class the model does not have accepted"; fi
    grep -q "hexagon': the model has no class of that name" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no clear message"; }
}

resume_refuses_another_model() {
    need lenet5 mlp || return
    dir=$(scratch resume-other)
    small_csv train 100 "$dir/train.csv"
    "$BUILD/mlp" --train "$dir/train.csv" --test "$dir/train.csv" --epochs 1 --out "$dir/mlp" >"$dir/log" 2>&1 || { fail "mlp failed"; return; }
    if "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --epochs 2 --resume "$dir/mlp/checkpoint.cnn" \
        >"$dir/log" 2>&1; then fail "lenet5 resumed the MLP's checkpoint"; fi
    grep -q "is a checkpoint of another model" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no clear message"; }
    if "$BUILD/mlp" --train "$dir/train.csv" --test "$dir/train.csv" --epochs 2 --out "$dir/x" --resume "$dir/mlp/model.cnn" \
        >"$dir/log" 2>&1; then fail "a model file accepted as a checkpoint"; fi
    grep -q "is a model file, not a checkpoint" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no clear message"; }
}

# A checkpoint that cannot be written stops training with an error and a
# non-zero status, never a quiet success.
checkpoint_failure_fails() {
    need lenet5 || return
    dir=$(scratch checkpoint-failure)
    small_csv train 100 "$dir/train.csv"
    if "$BUILD/lenet5" --train "$dir/train.csv" --test "$dir/train.csv" --classes 47 --epochs 2 --model "$dir/m.cnn" \
        --checkpoint "$dir/no-such-folder/c.cnn" >"$dir/log" 2>&1; then fail "exit status 0 when no checkpoint could be written"; fi
    grep -q "cannot write .*no-such-folder/c.cnn\|no-such-folder/c.cnn" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no message naming the checkpoint"; }
    [ ! -f "$dir/m.cnn" ] || fail "the model was saved as if training had succeeded"
}

run names_travel_with_the_model
run names_given_on_the_command_line
run data_errors_name_the_file
run lenet5_shows_progress
run lenet5_resumes
run mlp_resumes
run cnn_resumes
run resnet_resumes
run mlp_eval_gives_the_training_accuracy
run cnn_eval_gives_the_training_accuracy
run resnet_trains_and_eval_gives_its_accuracy
run cnn_batch_norm_trains
run folders_eval_gives_the_training_accuracy
run resume_refuses_another_model
run checkpoint_failure_fails
report
