/*
 * suppress_vendor.c — known bugs in "third-party" code beside one in the application,
 * for --suppress (docs/user-guide.md, "Suppressions").
 *
 *   vendor_double_free(): frees its buffer twice; called twice (one double-free
 *                         error, count 2).
 *   vendor_leak():        mallocs 32 bytes and drops the pointer (a leak).
 *   app_leak():           mallocs 48 bytes and drops the pointer (a leak).
 * main returns 0; without suppressions the run's status is 64.
 */
#include <stdio.h>
#include <stdlib.h>

static inline void escape(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation and the frees */
}

__attribute__((noipa)) void vendor_double_free(void)
{
    char *volatile p = malloc(16);

    escape(p);
    free(p);
    free(p);
}

__attribute__((noipa)) void vendor_leak(void)
{
    escape(malloc(32));
}

__attribute__((noipa)) void app_leak(void)
{
    escape(malloc(48));
}

int main(void)
{
    for (int i = 0; i < 2; i++)
        vendor_double_free();
    vendor_leak();
    app_leak();
    printf("vendor and app bugs done\n");
    return 0;
}
