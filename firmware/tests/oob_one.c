/*
 * oob_one.c — writes one byte past the end of a 13-byte malloc object.
 * poison: the red zone is damaged (out-of-bounds, found at free);
 * kasan: the store itself is out-of-bounds, in write_past_end().
 */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noipa)) static void write_past_end(char *p, int n)
{
    p[n] = 'X';                                 /* one byte too far */
}

int main(void)
{
    char *p = malloc(13);

    __asm__ volatile("" : : "r"(p) : "memory");  /* keep the allocation real */

    write_past_end(p, 13);
    printf("wrote p[13]\n");
    free(p);
    return 0;
}
