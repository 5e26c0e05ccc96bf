/*
 * hostile_storm_oom.c — an error storm of warnings: a retry loop asks
 * 200,000 times for more memory than the board has (GFP_KERNEL, so each
 * failure is an oom warning). kalloc reports the warning once with a count;
 * the run goes on, normal allocations still work after, and the firmware's
 * own exit status (0) stands: warnings are not errors.
 */
#include <stdio.h>
#include <string.h>

#include "kalloc.h"

#ifndef ROUNDS
#define ROUNDS 200000
#endif
#define HUGE (64u << 20)        /* more than any shipped board's RAM */

int main(void)
{
    unsigned int failed = 0;

    for (int i = 0; i < ROUNDS; i++) {
        void *p = kmalloc(HUGE, GFP_KERNEL);
        if (p == NULL)
            failed++;
        else
            kfree(p);
    }
    printf("retry loop over: %u failures\n", failed);

    char *q = kmalloc(100, GFP_KERNEL);
    if (q == NULL)
        return 1;
    strcpy(q, "still works");
    printf("%s\n", q);
    kfree(q);
    return 0;
}
