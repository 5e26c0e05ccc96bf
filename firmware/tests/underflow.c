/*
 * underflow.c — writes the byte before a 32-byte kmalloc object (index -1).
 * poison: the left red zone is damaged; kasan: the store is out-of-bounds.
 */
#include <kalloc.h>
#include <stdio.h>

__attribute__((noipa)) static void write_before_start(char *p, int i)
{
    p[i] = 'U';                                 /* i = -1 */
}

int main(void)
{
    char *p = kmalloc(32, GFP_KERNEL);

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */

    write_before_start(p, -1);
    printf("wrote p[-1]\n");
    kfree(p);
    return 0;
}
