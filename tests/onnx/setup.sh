#!/bin/sh
# Installs ONNX Runtime for JavaScript (the npm package onnxruntime-web, its
# WebAssembly build) into DIR, for tests/onnx/check.mjs. Does nothing when
# that version is already there. Run it once before check.mjs:
#   tests/onnx/setup.sh DIR       (DIR an ignored folder, e.g. build/npm)
# The package ships its .wasm files, so once installed nothing is downloaded
# at run time; onnxruntime-node is not used because its install script
# downloads more files. Exits 1 with a message when node or npm is missing
# or the install fails, 2 on a usage error. Why this version: README.md here.
set -eu
VERSION=1.31.1

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: tests/onnx/setup.sh DIR" >&2
    exit 2
fi
dir=$1

for tool in node npm; do
    if ! command -v $tool >/dev/null; then
        echo "setup.sh: $tool not found; install Node.js 20 with npm (Debian: apt-get install nodejs npm)" >&2
        exit 1
    fi
done

# "the package in DIR loads and is VERSION": the install check, before and after
installed() {
    node -e '
        const path = require("path").resolve(process.argv[1], "package.json");
        const ort = require("module").createRequire(path)("onnxruntime-web");
        process.exit(ort.env.versions.web === process.argv[2] ? 0 : 1);' "$dir" "$VERSION" 2>/dev/null
}

installed && exit 0
echo "setup.sh: installing onnxruntime-web@$VERSION into $dir"
mkdir -p "$dir"
# --ignore-scripts: no install script may fetch anything (the only one in
# the tree, protobufjs's postinstall, just checks its dependents' versions)
if ! npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts \
        --loglevel=error "onnxruntime-web@$VERSION"; then
    echo "setup.sh: npm install onnxruntime-web@$VERSION into $dir failed" >&2
    exit 1
fi
if ! installed; then
    echo "setup.sh: onnxruntime-web@$VERSION installed into $dir but does not load in node $(node --version)" >&2
    exit 1
fi
