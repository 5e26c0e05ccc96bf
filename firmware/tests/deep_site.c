/*
 * deep_site.c — main calls descend(20), which recurses 20 frames deep and
 * mallocs 40 bytes at the bottom, dropping the pointer: one leak whose
 * allocation site is deeper than the 16 frames a site keeps. Both machines
 * must report the same 16 frames (descend's malloc line, then descend's call
 * line fifteen times): the RV32 bridge walks the frame-pointer chain, the
 * Cortex-M bridge unwinds from the CPU (tests/machine/test_callsite_walk.py).
 */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static int descend(int n)
{
    if (n == 0) {
        char *p = malloc(40);

        __asm__ volatile("" : : "r"(p) : "memory");  /* the allocation is real */
        return p != 0;
    }
    int r = descend(n - 1);

    __asm__ volatile("" : "+r"(r) : : "memory");  /* work after the call: no tail call */
    return r + 1;
}

int main(void)
{
    printf("descended %d frames\n", descend(20));
    return 0;
}
