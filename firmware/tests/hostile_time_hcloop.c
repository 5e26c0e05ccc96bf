/* hostile_time_hcloop.c — allocates and frees in an endless loop: nearly every
 * few instructions are a hypercall, so a Ctrl-C (SIGINT) is most likely to
 * arrive while Python runs inside a Unicorn callback. kalloc must stop cleanly:
 * end "interrupted", exit status 130, no traceback. Also used for --timeout. */
#include <stdio.h>

#include "kalloc.h"

__attribute__((noinline, noreturn)) void churn_forever(void)
{
    for (;;) {
        void *p = kmalloc(32, GFP_KERNEL);
        kfree(p);
    }
}

int main(void)
{
    printf("churning\n");
    churn_forever();
}
