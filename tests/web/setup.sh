#!/bin/sh
# Installs playwright-core (Playwright's library without its browser
# downloads) from npm into DIR, for tests/web/test.mjs, which drives
# Debian's /usr/bin/chromium with it. Does nothing when that version is
# already there:
#   tests/web/setup.sh DIR       (DIR an ignored folder: build/npm/web)
# DIR is a folder of its own because `npm install --no-save` into a folder
# removes the packages an earlier --no-save install put there. No install
# script runs (tests/npm_install.sh), so nothing downloads a browser. Why
# this version: tests/web/README.md.
[ $# -eq 1 ] || { echo "usage: tests/web/setup.sh DIR" >&2; exit 2; }
exec sh "$(dirname "$0")/../npm_install.sh" playwright-core 1.61.1 "$1"
