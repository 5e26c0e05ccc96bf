/*
 * leak.c — make_leaks() mallocs three objects and drops every pointer to
 * them; main returns 0. The leak report at exit must list three leaks whose
 * allocation site is make_leaks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void make_leaks(void)
{
    for (int i = 0; i < 3; i++) {
        char *p = malloc(24 + 8 * i);

        memset(p, 'L', 24);
        __asm__ volatile("" : : "r"(p) : "memory");  /* the allocation is real */
    }
}

int main(void)
{
    make_leaks();
    printf("leaked 3 objects\n");
    return 0;
}
