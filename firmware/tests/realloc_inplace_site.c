/*
 * realloc_inplace_site.c — realloc and krealloc that stay in place (the new
 * size fits the slot), then a leak and an overflow of the resized objects:
 * both reports name the realloc's line as the allocation site, as they would
 * had the object moved (Valgrind's realloc3).
 */
#include <kalloc.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noipa)) static void write_at(char *p, int n)
{
    p[n] = 'X';
}

__attribute__((noipa)) static void leak_grown(void)
{
    char *p = malloc(40);                       /* kmalloc-64 */

    __asm__ volatile("" : : "r"(p) : "memory");
    p = realloc(p, 50);                         /* REALLOC_LEAK: in place, then leaked */
    __asm__ volatile("" : : "r"(p) : "memory");
}

__attribute__((noipa)) static void overflow_grown(void)
{
    char *q = kmalloc(20, GFP_KERNEL);          /* kmalloc-32 */

    __asm__ volatile("" : : "r"(q) : "memory");
    q = krealloc(q, 30, GFP_KERNEL);            /* KREALLOC_OOB: in place */
    write_at(q, 30);                            /* one byte past the 30 */
    kfree(q);
}

int main(void)
{
    leak_grown();
    overflow_grown();
    printf("done\n");
    return 0;
}
