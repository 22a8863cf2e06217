#!/bin/sh
# Installs playwright-core (Playwright's library without its browser
# downloads) from npm into DIR, for tests/web/test.mjs, which drives
# Debian's /usr/bin/chromium with it. Does nothing when that version is
# already there. As tests/onnx/setup.sh does for onnxruntime-web:
#   tests/web/setup.sh DIR       (DIR an ignored folder: build/npm/web)
# DIR is a folder of its own because `npm install --no-save` into a folder
# removes the packages an earlier --no-save install put there. Exits 1 with
# a message when node or npm is missing or the install fails, 2 on a usage
# error. Why this version: tests/web/README.md.
set -eu
VERSION=1.61.1

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: tests/web/setup.sh DIR" >&2
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
        const load = require("module").createRequire(path);
        load("playwright-core");
        process.exit(load("playwright-core/package.json").version === process.argv[2] ? 0 : 1);' "$dir" "$VERSION" 2>/dev/null
}

installed && exit 0
echo "setup.sh: installing playwright-core@$VERSION into $dir"
mkdir -p "$dir"
# --ignore-scripts: nothing may download a browser (playwright-core has no
# install script today; this keeps it so)
if ! npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts \
        --loglevel=error "playwright-core@$VERSION"; then
    echo "setup.sh: npm install playwright-core@$VERSION into $dir failed" >&2
    exit 1
fi
if ! installed; then
    echo "setup.sh: playwright-core@$VERSION installed into $dir but does not load in node $(node --version)" >&2
    exit 1
fi
