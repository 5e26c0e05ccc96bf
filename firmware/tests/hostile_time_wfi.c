/* hostile_time_wfi.c — `for (;;) wfi;` with nothing enabled that could wake it.
 *
 * Run with --irq-every 7: the test line is raised every 7 instructions but no
 * handler enabled it in the interrupt controller, so a raised line is not a
 * wake-up. kalloc ends the run at once: end "wfi", a `timeout` error ("wfi
 * with nothing to wake it"), exit status 66 — not minutes of fast-forward.
 * A normal allocation comes first, so the allocator's state is worth checking. */
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

__attribute__((noinline, noreturn)) void sleep_forever(void)
{
    for (;;)
        kalloc_wfi();
}

int main(void)
{
    char *p = kmalloc(64, GFP_KERNEL);

    strcpy(p, "before sleeping");
    printf("%s\n", p);
    kfree(p);
    local_irq_enable();
    sleep_forever();
}
