/*
 * free_stack.c — frees stack addresses on the task stack: kfree() of a local of
 * task_local(), passed down to a helper that frees it (so the frame holding the
 * address is not the caller of kfree), then free() of a local of main(). Each is
 * an invalid-free that says the address is on the task stack and whose frame
 * holds it (task_local, then main). Last, kfree() of the address of a local of a
 * function that has returned: a dead frame below main's. Exit status 64.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kalloc.h"

/* GCC sees the mistakes at compile time; they are the point of the test. */
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

__attribute__((noipa)) void release(void *p)
{
    kfree(p);
}

__attribute__((noipa)) int task_local(void)
{
    volatile char buf[32];

    buf[0] = 1;
    release((void *)&buf[8]);
    return buf[0];
}

__attribute__((noipa)) void *dangling(void)
{
    volatile int gone = 5;
    void *p = (void *)&gone;

    __asm__ volatile("" : "+r"(p)); /* GCC would return NULL for a local's address */
    return p;
}

int main(void)
{
    volatile int on_stack = 0;

    task_local();
    free((void *)&on_stack);
    kfree(dangling());
    printf("done\n");
    return on_stack;
}
