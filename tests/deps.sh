#!/bin/sh
# Installs the Debian (or Ubuntu) packages that a task needs and this
# machine lacks; installs nothing when all is there. The one place the
# project installs packages: `make deps`, .ci/run, and the Makefile's demo
# and bench call it. As root it runs apt-get itself, else through sudo.
#   tests/deps.sh TASK...
#     build     cc, c++, make, gunzip, and stb_image.h and stb_image_write.h
#               (libstb-dev) for the programs that read or write images
#     test      clang for the clang compile checks and `make sanitize`, its
#               sanitizer runtimes (libclang-rt-dev), its OpenMP (libomp-dev);
#               valgrind (the README's program is run under it), pkg-config
#               (`make install`'s cnn.pc), MinGW-w64 (gcc-mingw-w64-x86-64:
#               the Windows compile checks)
#     fashion   Fashion-MNIST (dataset-fashion-mnist): `make demo` and
#               `make bench` train on it when there is no EMNIST
#     onnx      Node.js and npm for the ONNX Runtime test (test_onnx, which
#               installs onnxruntime-web from npm into build/npm) and
#               python3-onnx for its onnx.checker
#     torch     PyTorch (python3-torch) for `make interop` and `make fixtures`
#     openblas  OpenBLAS for PyTorch (`make bench`; Debian's python3-torch
#               recommends it and otherwise falls back to the far slower
#               reference BLAS), only when PyTorch is installed
#     mcu       the Cortex-M4 cross compiler with newlib (gcc-arm-none-eabi,
#               libnewlib-arm-none-eabi) and qemu-system-arm: `make mcu`
#     wasm      clang, lld, wasi-libc and clang's wasm32 runtime
#               (libclang-rt-N-dev-wasm32, N clang's version): `make web`
#     web       wasm, and chromium, Node.js, npm and python3 for
#               `make test-web` (which installs playwright-core from npm
#               into build/npm/web)
set -eu
STB_DIR=${STB_DIR:-/usr/include/stb}

# "clang accepts these flags": the runtimes are only recommended by clang
clang_links() { echo 'int main(void) { return 0; }' | clang "$@" -x c - -o /dev/null 2>/dev/null; }

need=
want() { need="$need $1"; }
for task in "$@"; do
    case $task in
    build)
        command -v cc >/dev/null && command -v gcc >/dev/null || want gcc   # gcc by name: a compile check
        command -v c++ >/dev/null || want g++
        command -v make >/dev/null || want make
        command -v gunzip >/dev/null || want gzip
        if [ ! -f "$STB_DIR/stb_image.h" ] || [ ! -f "$STB_DIR/stb_image_write.h" ]; then want libstb-dev; fi ;;
    test)
        if command -v clang >/dev/null; then
            clang_links -fsanitize=address,undefined || want libclang-rt-dev
            clang_links -fopenmp || want libomp-dev
        else
            want clang; want libclang-rt-dev; want libomp-dev
        fi
        command -v valgrind >/dev/null || want valgrind
        command -v pkg-config >/dev/null || want pkg-config
        command -v x86_64-w64-mingw32-gcc >/dev/null || want gcc-mingw-w64-x86-64 ;;
    fashion)
        [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || want dataset-fashion-mnist ;;
    onnx)
        command -v node >/dev/null || want nodejs
        command -v npm >/dev/null || want npm
        /usr/bin/python3 -c 'import onnx' 2>/dev/null || want python3-onnx ;;
    torch)
        /usr/bin/python3 -c 'import torch' 2>/dev/null || want python3-torch ;;
    openblas)
        if /usr/bin/python3 -c 'import torch' 2>/dev/null && ! ls /usr/lib/*/openblas-*/libblas.so.3 >/dev/null 2>&1; then
            want libopenblas0-pthread
        fi ;;
    mcu)
        command -v arm-none-eabi-gcc >/dev/null || want gcc-arm-none-eabi
        [ -f /usr/lib/arm-none-eabi/newlib/rdimon.specs ] || want libnewlib-arm-none-eabi
        command -v qemu-system-arm >/dev/null || want qemu-system-arm ;;
    wasm|web)
        # a reactor links: wasm-ld (lld), wasi-libc and the runtime are there
        if ! command -v clang >/dev/null; then
            want clang; want lld; want wasi-libc; want libclang-rt-14-dev-wasm32   # Debian 12's clang
        elif ! clang_links --target=wasm32-wasi -mexec-model=reactor; then
            want lld; want wasi-libc; want "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev-wasm32"
        fi
        [ "$task" = web ] || continue
        [ -x /usr/bin/chromium ] || want chromium
        command -v node >/dev/null || want nodejs
        command -v npm >/dev/null || want npm
        command -v python3 >/dev/null || want python3 ;;
    *)
        echo "deps.sh: unknown task '$task' (build, test, onnx, torch, fashion, openblas, mcu, wasm or web)" >&2
        exit 2 ;;
    esac
done
[ -n "$need" ] || exit 0

echo "deps.sh: installing$need"
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086 # one word a package
$sudo apt-get install -y -qq $need
