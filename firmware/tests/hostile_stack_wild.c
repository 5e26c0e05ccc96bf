/* hostile_stack_wild.c — a store through a wild pointer into the stack guard,
 * with the stack itself nearly empty. Still a `stack-overflow` report (the
 * guard was touched; exit status 65), whose message says sp is inside the
 * stack: a pointer below the stack, not a frame that did not fit. */
#include <stdio.h>

#include "kalloc.h"

extern char __kalloc_stack_guard[];

__attribute__((noinline)) void scribble(volatile char *p)
{
    p[100] = 1;
}

int main(void)
{
    void *p = kmalloc(16, GFP_KERNEL);

    kfree(p);
    scribble(__kalloc_stack_guard);
    printf("never printed\n");
    return 0;
}
