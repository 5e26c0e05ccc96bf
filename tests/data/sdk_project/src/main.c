/* sdk_project: a small firmware with its own build (CMakeLists.txt, Makefile),
 * several directories, a private include directory and a static library of its
 * own, built against the installed kalloc SDK (docs/user-guide.md, "Build with
 * your own build system"). Exit 0 and a clean report, unless built with
 * -DAPP_OVERRUN. */
#include <kalloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "label.h"
#include "ring.h"

int main(void)
{
    struct ring *r = ring_new(RING_CAPACITY);
    if (!r)
        return 1;
    for (int i = 1; i <= 10; i++)
        ring_push(r, i);
    char *label = label_make("sdk_project");
    if (!label)
        return 1;
    void *dma = kmalloc(64, GFP_DMA);
    printf("%s: ring sum=%d dma=%s\n", label, ring_sum(r), dma ? "yes" : "no");
    kfree(dma);
    free(label);
    ring_free(r);
    return 0;
}
