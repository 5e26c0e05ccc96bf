/*
 * mallocs.c — unmodified C using the malloc family; prints "ok" when every
 * result checks out, "FAIL: ..." and exits 1 otherwise.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static volatile size_t huge = SIZE_MAX / 2;    /* volatile: no compile-time verdict */

static void check(int cond, const char *what)
{
    if (!cond) {
        printf("FAIL: %s\n", what);
        failures++;
    }
}

int main(void)
{
    char *a = malloc(100);
    check(a != NULL, "malloc(100)");
    memset(a, 'a', 100);

    int *z = calloc(16, sizeof *z);
    check(z != NULL, "calloc(16, 4)");
    for (int i = 0; i < 16; i++)
        check(z[i] == 0, "calloc memory is zeroed");

    a = realloc(a, 300);
    check(a != NULL, "realloc grow");
    check(a[0] == 'a' && a[99] == 'a', "realloc keeps the contents");

    char *s = strdup("kalloc");
    check(s && strcmp(s, "kalloc") == 0, "strdup");

    void *al = aligned_alloc(64, 100);
    check(al && ((uintptr_t)al & 63) == 0, "aligned_alloc(64, 100)");

    void *pm = NULL;
    check(posix_memalign(&pm, 256, 40) == 0, "posix_memalign(256)");
    check(pm && ((uintptr_t)pm & 255) == 0, "posix_memalign alignment");
    void *untouched = &failures;
    check(posix_memalign(&untouched, 3, 40) == EINVAL, "posix_memalign(3) is EINVAL");
    check(untouched == &failures, "posix_memalign leaves *out on error");

    check(calloc(huge, 4) == NULL, "calloc overflow gives NULL");

    free(a);
    free(z);
    free(s);
    free(al);
    free(pm);
    free(NULL);

    if (failures)
        return 1;
    printf("ok\n");
    return 0;
}
