/* hostile_time_leakscan.c — exits with hundreds of MiB of live, reachable pages
 * chained from a global, on the 1 GiB board: the leak scan after exit must
 * read every word of them. --timeout must still hold there (the scan is cut
 * short: end "timeout", exit status 66). It allocates 4 MiB blocks until
 * alloc_pages fails or it holds LIMIT of them. */
#include <stdio.h>

#include "kalloc.h"

#define ORDER 10          /* 4 MiB blocks */
#define LIMIT 160         /* at most 640 MiB */

static void **chain;

int main(void)
{
    int n = 0;

    while (n < LIMIT) {
        void **block = alloc_pages(GFP_KERNEL | __GFP_NOWARN, ORDER);
        if (!block)
            break;
        block[0] = chain;
        chain = block;
        n++;
    }
    printf("%d blocks of 4 MiB live at exit\n", n);
    return 0;
}
