#!/bin/sh
# Installs ONNX Runtime for JavaScript (the npm package onnxruntime-web, its
# WebAssembly build) into DIR, for tests/onnx/check.mjs. Does nothing when
# that version is already there. Run it once before check.mjs:
#   tests/onnx/setup.sh DIR       (DIR an ignored folder, e.g. build/npm)
# The package ships its .wasm files, so once installed nothing is downloaded
# at run time; onnxruntime-node is not used because its install script
# downloads more files (and tests/npm_install.sh runs no install script: the
# only one in this tree, protobufjs's postinstall, just checks its
# dependents' versions). Why this version: README.md here.
[ $# -eq 1 ] || { echo "usage: tests/onnx/setup.sh DIR" >&2; exit 2; }
exec sh "$(dirname "$0")/../npm_install.sh" onnxruntime-web 1.31.1 "$1"
