/*
 * uaf_write.c — writes to a malloc object after freeing it.
 * poison: the free poison is damaged (use-after-free, found at exit);
 * kasan: the store is use-after-free in write_after_free().
 */
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

__attribute__((noipa)) static void write_after_free(int *p)
{
    p[1] = 0x1234;
}

int main(void)
{
    int *p = malloc(48);

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */

    p[0] = 1;
    free(p);
    write_after_free(p);
    printf("wrote after free\n");
    return 0;
}
