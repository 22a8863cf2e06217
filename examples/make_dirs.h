/* make_dirs.h - "mkdir -p" for the examples that write into a folder: the
   folder and every missing parent, on POSIX systems and on Windows (MinGW,
   MSVC: _mkdir from <direct.h>, which takes no mode). */
#ifndef EXAMPLES_MAKE_DIRS_H
#define EXAMPLES_MAKE_DIRS_H

#include <errno.h>
#include <string.h>
#ifdef _WIN32
#include <direct.h>
#define MAKE_DIRS_ONE(path) _mkdir(path)
#define MAKE_DIRS_SEPARATOR(c) ((c) == '/' || (c) == '\\')
#else
#include <sys/stat.h>
#define MAKE_DIRS_ONE(path) mkdir(path, 0777)
#define MAKE_DIRS_SEPARATOR(c) ((c) == '/')
#endif

/* Creates the folder path and its missing parents; a part that exists
   already is fine. Returns 1, or 0 with errno saying why (a path longer
   than 4095 bytes: ENAMETOOLONG where there is one, else ERANGE). */
static int make_dirs(const char *path)
{
    char prefix[4096];
    size_t i, n = strlen(path);
    if (n == 0) return 1; /* the current folder */
    if (n >= sizeof prefix) {
#ifdef ENAMETOOLONG
        errno = ENAMETOOLONG;
#else
        errno = ERANGE;
#endif
        return 0;
    }
    memcpy(prefix, path, n + 1);
    /* each prefix that ends before a separator, then the whole path */
    for (i = 1; i <= n; i++) {
        const char c = prefix[i];
        if (c != '\0' && !MAKE_DIRS_SEPARATOR(c)) continue;
        if (MAKE_DIRS_SEPARATOR(prefix[i - 1])) continue; /* the root "/", an empty part "a//b" */
#ifdef _WIN32
        if (prefix[i - 1] == ':') continue; /* a drive, "C:" */
#endif
        prefix[i] = '\0';
        if (MAKE_DIRS_ONE(prefix) != 0 && errno != EEXIST) return 0;
        prefix[i] = c;
    }
    return 1;
}

#endif
