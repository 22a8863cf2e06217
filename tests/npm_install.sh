#!/bin/sh
# Installs one npm package at one version into DIR, for a test that runs it
# in Node.js; does nothing when that version is already there and loads.
# tests/onnx/setup.sh (onnxruntime-web) and tests/web/setup.sh
# (playwright-core) call it with their pinned versions:
#   sh tests/npm_install.sh PACKAGE VERSION DIR   (DIR an ignored folder)
# --ignore-scripts: no install script may download anything (a browser, a
# native build). Exits 1 with a message when node or npm is missing or the
# install fails, 2 on a usage error.
set -eu
if [ $# -ne 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
    echo "usage: tests/npm_install.sh PACKAGE VERSION DIR" >&2
    exit 2
fi
package=$1 version=$2 dir=$3

for tool in node npm; do
    if ! command -v $tool >/dev/null; then
        echo "npm_install.sh: $tool not found; install Node.js 20 with npm (Debian: apt-get install nodejs npm)" >&2
        exit 1
    fi
done

# "the package in DIR loads, and its package.json says VERSION": the check
# before and after (package.json read as a file: a package's "exports" may
# not let require() reach it)
installed() {
    node -e '
        const path = require("path"), dir = path.resolve(process.argv[1]), name = process.argv[2];
        require("module").createRequire(path.join(dir, "package.json"))(name);
        const meta = JSON.parse(require("fs").readFileSync(path.join(dir, "node_modules", name, "package.json"), "utf8"));
        process.exit(meta.version === process.argv[3] ? 0 : 1);' "$dir" "$package" "$version" 2>/dev/null
}

installed && exit 0
echo "npm_install.sh: installing $package@$version into $dir"
mkdir -p "$dir"
if ! npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error "$package@$version"; then
    echo "npm_install.sh: npm install $package@$version into $dir failed" >&2
    exit 1
fi
if ! installed; then
    echo "npm_install.sh: $package@$version installed into $dir but does not load in node $(node --version)" >&2
    exit 1
fi
