#!/bin/sh
# make install puts cnn.h and a pkg-config file, cnn.pc, under DESTDIR and
# PREFIX; pkg-config then builds README.md's program (taken from the README,
# as test_readme.sh takes it) and a program that prints the version, which
# must be the .pc file's; make uninstall leaves no file behind.
. "$(dirname "$0")/lib.sh"

# cnn.h's version, read here independently of the Makefile
version=$(for part in MAJOR MINOR PATCH; do
    sed -n "s/^#define CNN_VERSION_$part  *\([0-9][0-9]*\).*/\1/p" cnn.h
done | paste -s -d. -)

installs_where_prefix_and_destdir_say() {
    dest=$(scratch destdir)
    MAKEFLAGS= make --no-print-directory install DESTDIR="$dest" >"$dest.log" 2>&1 || { sed 's/^/    | /' "$dest.log"; fail "make install DESTDIR=$dest failed"; return; }
    cmp -s cnn.h "$dest/usr/local/include/cnn.h" || fail "no copy of cnn.h in $dest/usr/local/include (the default PREFIX)"
    [ -f "$dest/usr/local/lib/pkgconfig/cnn.pc" ] || fail "no $dest/usr/local/lib/pkgconfig/cnn.pc"
}

pkg_config_builds_the_readme_program() {
    command -v pkg-config >/dev/null || { skip "no pkg-config (tests/deps.sh test installs it)"; return; }
    dest=$(scratch install)
    work=$(scratch install-work)
    MAKEFLAGS= make --no-print-directory install DESTDIR="$dest" PREFIX=/usr >"$work/install.log" 2>&1 ||
        { sed 's/^/    | /' "$work/install.log"; fail "make install DESTDIR=$dest PREFIX=/usr failed"; return; }
    cmp -s cnn.h "$dest/usr/include/cnn.h" || fail "no copy of cnn.h in $dest/usr/include"
    pc="PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$dest/usr/lib/pkgconfig"
    got=$(env $pc pkg-config --modversion cnn 2>&1) || fail "$pc pkg-config --modversion cnn: $got"
    [ "$got" = "$version" ] || fail "cnn.pc says version '$got', cnn.h $version"
    flags=$(env $pc pkg-config --cflags --libs cnn) || { fail "pkg-config --cflags --libs cnn failed"; return; }
    echo "    pkg-config --cflags --libs cnn: $flags"
    readme_program >"$work/example.c" || fail "no program in README.md"
    # shellcheck disable=SC2086 # $flags: pkg-config's words
    (cd "$work" && $CC -std=c99 -O2 example.c -o example $flags) >"$work/cc.log" 2>&1 ||
        { sed 's/^/    | /' "$work/cc.log"; fail "the README program does not build with pkg-config's flags"; }
    printf '%s\n' '#define CNN_IMPLEMENTATION' '#include <cnn.h>' '#include <stdio.h>' \
        'int main(void) { printf("%d.%d.%d\n", CNN_VERSION_MAJOR, CNN_VERSION_MINOR, CNN_VERSION_PATCH); return 0; }' >"$work/version.c"
    # shellcheck disable=SC2086
    if (cd "$work" && $CC -std=c99 version.c -o version $flags) >"$work/cc.log" 2>&1; then
        got=$("$work/version")
        [ "$got" = "$version" ] || fail "the installed cnn.h says version '$got', expected $version"
    else
        sed 's/^/    | /' "$work/cc.log"; fail "a program that prints the version does not build with pkg-config's flags"
    fi
    MAKEFLAGS= make --no-print-directory uninstall DESTDIR="$dest" PREFIX=/usr >"$work/uninstall.log" 2>&1 || fail "make uninstall failed"
    left=$(find "$dest" ! -type d)
    [ -z "$left" ] || fail "make uninstall left: $left"
}

run installs_where_prefix_and_destdir_say
run pkg_config_builds_the_readme_program
report
