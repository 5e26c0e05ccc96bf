/*
 * string.c — byte-precise mem* and str* functions, replacing picolibc's.
 *
 * picolibc's word-at-a-time strlen and friends read whole aligned words, so
 * they touch bytes past the end of an object; a sanitizer (kalloc's shadow
 * checks) would rightly report that. These loops touch exactly the bytes the
 * C standard says they touch, one at a time: slower, but honest.
 *
 * Built with -fno-builtin -fno-tree-loop-distribute-patterns (see Makefile):
 * otherwise GCC recognises the loops and turns memset's body into a call to
 * memset.
 *
 * Under compiled KASAN (a KASAN=1 build run with --sanitize=kasan) each
 * function checks the bytes it touched against the shadow on behalf of its
 * caller (KASAN_CHECK, sdk/kasan.h), as Linux's KASAN does for memcpy and
 * friends: GCC leaves these as library calls, so no instrumented code sees
 * the overflow. strcmp, strncmp, strchr, strrchr and memchr are not checked
 * (they stop at the first difference or match). Otherwise the check is one
 * load and a branch.
 */
#include <string.h>

#include "kasan.h"

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    KASAN_CHECK(src, n, 0);
    KASAN_CHECK(dst, n, 1);
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    KASAN_CHECK(src, n, 0);
    KASAN_CHECK(dst, n, 1);
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else if (d > s) {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;

    KASAN_CHECK(dst, n, 1);
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;

    KASAN_CHECK(a, n, 0);
    KASAN_CHECK(b, n, 0);
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

void *memchr(const void *s, int c, size_t n)
{
    const unsigned char *p = s;

    for (; n; n--, p++)
        if (*p == (unsigned char)c)
            return (void *)p;
    return NULL;
}

size_t strlen(const char *s)
{
    const char *p = s;

    while (*p)
        p++;
    KASAN_CHECK(s, p - s + 1, 0);
    return (size_t)(p - s);
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;

    while (n < max && s[n])
        n++;
    KASAN_CHECK(s, n < max ? n + 1 : n, 0);
    return n;
}

char *strcpy(char *restrict dst, const char *restrict src)
{
    char *d = dst;
    const char *s = src;

    while ((*d++ = *s++))
        ;
    KASAN_CHECK(src, s - src, 0);
    KASAN_CHECK(dst, d - dst, 1);
    return dst;
}

/* Pads with NULs up to n, and leaves dst unterminated when src is too long. */
char *strncpy(char *restrict dst, const char *restrict src, size_t n)
{
    size_t i = 0;

    for (; i < n && src[i]; i++)
        dst[i] = src[i];
    KASAN_CHECK(src, i < n ? i + 1 : n, 0);
    for (; i < n; i++)
        dst[i] = '\0';
    KASAN_CHECK(dst, n, 1);
    return dst;
}

char *strcat(char *restrict dst, const char *restrict src)
{
    char *d = dst;
    const char *s = src;

    while (*d)
        d++;
    while ((*d++ = *s++))
        ;
    KASAN_CHECK(src, s - src, 0);
    KASAN_CHECK(dst, d - dst, 1);
    return dst;
}

char *strncat(char *restrict dst, const char *restrict src, size_t n)
{
    char *d = dst;
    const char *s = src;

    while (*d)
        d++;
    while (n-- && *s)
        *d++ = *s++;
    *d++ = '\0';
    KASAN_CHECK(src, s - src, 0);
    KASAN_CHECK(dst, d - dst, 1);
    return dst;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++)
        if (*a != *b || !*a)
            return (unsigned char)*a - (unsigned char)*b;
    return 0;
}

char *strchr(const char *s, int c)
{
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return NULL;
    }
}

char *strrchr(const char *s, int c)
{
    const char *last = NULL;

    for (;; s++) {
        if (*s == (char)c)
            last = s;
        if (!*s)
            return (char *)last;
    }
}
