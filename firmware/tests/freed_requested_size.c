/*
 * freed_requested_size.c — a use-after-free and a double free of objects whose
 * requested size is not their size class: the reports name 177 and 100 bytes,
 * the size asked for, with the slot beside it (not "a 192-byte kmalloc-192").
 * poison: the write after free is found at exit; kasan: at the store.
 */
#include <kalloc.h>
#include <stdio.h>
#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  /* the point of the test */

__attribute__((noipa)) static void write_after_free(char *p)
{
    p[8] = 'U';
}

__attribute__((noipa)) static void free_twice(void *q)
{
    kfree(q);                                   /* DF_FREE */
    kfree(q);                                   /* DF_AGAIN: the double free */
}

int main(void)
{
    char *p = malloc(177);                      /* UAF_ALLOC: a kmalloc-192 slot */

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */
    p[0] = 1;
    free(p);                                    /* UAF_FREE */
    write_after_free(p);
    free_twice(kmalloc(100, GFP_KERNEL));       /* DF_ALLOC: a kmalloc-128 slot */
    printf("done\n");
    return 0;
}
