#!/bin/sh
# The compile checks (`make test` runs them): cnn.h as C99 and as C++11
# under -Werror with gcc and clang, with OpenMP, under CNN_STATIC, as two
# translation units (one with CNN_IMPLEMENTATION, also built with
# CNN_NO_FAST while the other is not) linked together, with
# CNN_IMAGES, and with CNN_NO_FAST; and a plain object that holds none of
# the fast path. Then Windows: cnn.h and every example cross-compiled and
# linked with MinGW-w64 when it is installed. Prints "ok   NAME" or
# "FAIL NAME" and the compiler's words, a line a check, or "skip NAME:
# why", for tests/run.sh to count.
#   sh tests/compile/run.sh DIR     (objects and logs go to DIR)
# Environment: CC, CXX (default cc, c++), STB_DIR (default /usr/include/stb),
# MINGW_CC (default x86_64-w64-mingw32-gcc).
# shellcheck disable=SC2086 # $CC, $CXX, $strict, $impl and $images are lists of words
mkdir -p "$1" && dir=$(cd "$1" && pwd) && cd "$(dirname "$0")" || exit 1
CC=${CC:-cc}
CXX=${CXX:-c++}
strict="-Wall -Wextra -pedantic -Werror"
impl="-DCOMPILE_CHECK_MAIN impl.c -lm -o $dir/a.out"
images="-I${STB_DIR:-/usr/include/stb} -c images.c -o $dir/a.o"

check() {
    name=$1
    shift
    if "$@" >"$dir/$name.log" 2>&1; then echo "ok   $name"; else echo "FAIL $name"; cat "$dir/$name.log"; fi
}

# A plain object (CNN_NO_FAST) must hold no function of the fast path
# (cnn__gemm*, cnn__pack*, cnn__im2col*, cnn__col2im*) and no AVX register
# (ymm, zmm). -fkeep-static-functions and -fno-inline keep every static
# function of cnn.h in the object, where nm sees it, inlined or not, called
# or not (gcc only: clang has no -fkeep-static-functions).
no_fast_path() {
    gcc -std=c99 $strict -DCNN_NO_FAST -O2 -fno-inline -fkeep-static-functions -fkeep-inline-functions \
        -c impl.c -o "$dir/plain.o" || return 1
    nm "$dir/plain.o" >"$dir/plain.nm" && objdump -d "$dir/plain.o" >"$dir/plain.asm" || return 1
    if grep -m 8 -E ' cnn__(gemm|pack|im2col|col2im)' "$dir/plain.nm"; then
        echo "^ functions of the fast path in a CNN_NO_FAST object"
        return 1
    fi
    if grep -m 8 -E '%[yz]mm' "$dir/plain.asm"; then
        echo "^ AVX registers in a CNN_NO_FAST object"
        return 1
    fi
}

check c99_werror $CC -std=c99 $strict $impl
check cxx11_werror $CXX -std=c++11 $strict -x c++ $impl
check clang_c99_werror clang -std=c99 $strict $impl
check clang_cxx11_werror clang++ -std=c++11 $strict -x c++ $impl
check openmp_werror $CC -std=c99 $strict -fopenmp $impl
check static_werror $CC -std=c99 $strict -DCNN_STATIC $impl
# release builds: NDEBUG empties CNN_ASSERT, and nothing may then go unused
check ndebug_c99_werror $CC -std=c99 $strict -DNDEBUG $impl
check ndebug_clang_c99_werror clang -std=c99 $strict -DNDEBUG $impl
check plain_c99_werror $CC -std=c99 $strict -DCNN_NO_FAST $impl
check plain_cxx11_werror $CXX -std=c++11 $strict -x c++ -DCNN_NO_FAST $impl
check plain_has_no_fast_path no_fast_path
check two_units_link sh -c "$CC -std=c99 $strict impl.c user.c -o $dir/two -lm && $dir/two"
check two_units_link_cxx sh -c "$CXX -std=c++11 $strict -x c++ impl.c user.c -o $dir/two -lm && $dir/two"
check two_units_link_plain sh -c "$CC -std=c99 $strict -DCNN_NO_FAST -c impl.c -o $dir/plain_impl.o && \
    $CC -std=c99 $strict -c user.c -o $dir/user.o && $CC $dir/plain_impl.o $dir/user.o -o $dir/two -lm && $dir/two"
check images_c99_werror $CC -std=c99 $strict $images
check images_cxx11_werror $CXX -std=c++11 $strict -x c++ $images
check images_clang_c99_werror clang -std=c99 $strict $images
check images_clang_cxx11_werror clang++ -std=c++11 $strict -x c++ $images
check images_static_werror $CC -std=c99 $strict -DCNN_STATIC $images

# Windows, through MinGW-w64 (Debian's gcc-mingw-w64-x86-64, which
# tests/deps.sh test installs): the library linked into a program under
# -Werror, with OpenMP when this MinGW has it, and with images; then each
# example linked as a user builds it (C99, -lm, no OpenMP: mingw_NAME) and
# as the Makefile builds it (with OpenMP when there is one:
# mingw_openmp_NAME). Unoptimised: these check the names, not the code.
MINGW_CC=${MINGW_CC:-x86_64-w64-mingw32-gcc}
if command -v "$MINGW_CC" >/dev/null 2>&1; then
    mingw_openmp=
    echo 'int main(void) { return 0; }' | "$MINGW_CC" -fopenmp -x c - -o "$dir/mingw-openmp.exe" >/dev/null 2>&1 && mingw_openmp=-fopenmp
    check mingw_c99_werror "$MINGW_CC" -std=c99 $strict -DCOMPILE_CHECK_MAIN impl.c -lm -o "$dir/mingw.exe"
    if [ -n "$mingw_openmp" ]; then
        check mingw_openmp_werror "$MINGW_CC" -std=c99 $strict -fopenmp -DCOMPILE_CHECK_MAIN impl.c -lm -o "$dir/mingw.exe"
    else
        echo "skip mingw_openmp_werror: $MINGW_CC has no OpenMP"
    fi
    check mingw_images_c99_werror "$MINGW_CC" -std=c99 $strict $images
    for example in ../../examples/*.c; do
        program=$(basename "$example" .c)
        check "mingw_$program" "$MINGW_CC" -std=c99 -Wall -Wextra -pedantic -I"${STB_DIR:-/usr/include/stb}" \
            "$example" -o "$dir/mingw_$program.exe" -lm
        [ -z "$mingw_openmp" ] || check "mingw_openmp_$program" "$MINGW_CC" -std=c99 -Wall -Wextra -pedantic -fopenmp \
            -I"${STB_DIR:-/usr/include/stb}" "$example" -o "$dir/mingw_openmp_$program.exe" -lm
    done
else
    echo "skip mingw: no $MINGW_CC (Debian: gcc-mingw-w64-x86-64; 'sh tests/deps.sh test' installs it)"
fi
