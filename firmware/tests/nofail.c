/* nofail.c — a __GFP_NOFAIL request bigger than any board's RAM: kalloc
 * reports an oom *error* (failure is not an option it was allowed). */
#include <stdio.h>

#include "kalloc.h"

#define TOO_BIG 0x7ffff000u     /* ~2 GiB: RAM spans at most 1 GiB */

int main(void)
{
    void *p = kmalloc(TOO_BIG, GFP_KERNEL | __GFP_NOFAIL);

    printf("nofail returned %s\n", p ? "memory" : "NULL");
    kfree(p);
    return 0;
}
