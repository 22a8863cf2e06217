#!/bin/sh
# examples/kernels.c writes its feature maps into an output folder that need
# not exist: it creates it, parents included (examples/make_dirs.h), and
# says so when it cannot.
. "$(dirname "$0")/lib.sh"

program=$BUILD/kernels

# an 8x6 grey picture as a binary PGM, which stb_image reads
picture() {
    { printf 'P5\n8 6\n255\n'; awk 'BEGIN { for (i = 0; i < 48; i++) printf "%c", (i * 37) % 200 + 40 }'; } >"$1"
}

creates_the_output_folder_and_its_parents() {
    [ -x "$program" ] || { fail "$program is not built"; return; }
    dir=$(scratch kernels)
    picture "$dir/grey.pgm"
    "$program" "$dir/grey.pgm" "$dir/new/nested/out" >"$dir/log" 2>&1
    status=$?
    [ "$status" -eq 0 ] || { sed 's/^/    | /' "$dir/log"; fail "exit status $status"; }
    for name in 0-grey 1-conv-vertical 2-relu-horizontal 3-pool-laplacian; do
        file=$dir/new/nested/out/$name.png
        if [ ! -f "$file" ]; then fail "no $file"; continue; fi
        [ "$(head -c 4 "$file" | tail -c 3)" = PNG ] || fail "$file is not a PNG"
    done
    # a folder that exists already is fine too
    "$program" "$dir/grey.pgm" "$dir/new/nested/out/" >"$dir/log" 2>&1 || fail "a non-zero exit status when the folder exists"
}

says_when_it_cannot() {
    [ -x "$program" ] || { fail "$program is not built"; return; }
    dir=$(scratch kernels-file)
    picture "$dir/grey.pgm"
    : >"$dir/a-file"
    if "$program" "$dir/grey.pgm" "$dir/a-file/out" >"$dir/log" 2>&1; then fail "exit status 0 for a folder under a file"; fi
    grep -q "cannot create the folder '$dir/a-file/out'" "$dir/log" || { sed 's/^/    | /' "$dir/log"; fail "no message naming the folder"; }
}

run creates_the_output_folder_and_its_parents
run says_when_it_cannot
report
