/*
 * uaf_read.c — reads a malloc object after freeing it.
 * poison: a read changes nothing, so it is not seen; kasan: use-after-free
 * in read_after_free(), with the allocation and the free site.
 */
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

__attribute__((noipa)) static int read_after_free(const int *p)
{
    return p[2];
}

int main(void)
{
    int *p = malloc(40);

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */

    p[2] = 7;
    free(p);
    printf("read %d\n", read_after_free(p) == 7 ? 7 : 0);
    return 0;
}
