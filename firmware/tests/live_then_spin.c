/*
 * live_then_spin.c — keeps 100 kmalloc objects live, then computes forever:
 * a long run with a known number of live allocations, for `kalloc run`'s
 * progress line on a terminal (tests/cli/test_progress.py). The run ends on
 * the instruction budget (exit status 66); its report is deterministic.
 */
#include <stdio.h>

#include "kalloc.h"

#define LIVE 100

void *volatile kept[LIVE];
static volatile unsigned long counter;

__attribute__((noinline, noreturn)) void spin_forever(void)
{
    for (;;)
        counter++;
}

int main(void)
{
    for (int i = 0; i < LIVE; i++)
        kept[i] = kmalloc(16 + (i % 4) * 16, GFP_KERNEL);
    printf("%d objects live\n", LIVE);
    spin_forever();
}
