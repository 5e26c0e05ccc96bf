/*
 * uaf_then_double_free.c — writes to a freed object, then frees it again.
 * poison: double-free at the second free, then use-after-free at exit (the free
 * poison is damaged); kasan: use-after-free at the store, then double-free. The
 * same bugs in another order: what assert_errors(kinds={...}) is for.
 */
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

__attribute__((noipa)) static void write_after_free(int *p)
{
    p[2] = 0x5678;
}

__attribute__((noipa)) static void free_again(int *p)
{
    free(p);
}

int main(void)
{
    int *p = malloc(40);

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */

    p[0] = 1;
    free(p);
    write_after_free(p);
    free_again(p);
    printf("wrote after free, freed twice\n");
    return 0;
}
