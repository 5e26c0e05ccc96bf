/*
 * bad_hypercall.c — bypasses the SDK and rings the doorbells by hand: first a
 * doorbell with no service behind it, then a real service (KH_KMALLOC) with
 * an argument block pointer that points nowhere. Each must give a
 * bad-hypercall report, never a crash of the machine.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

#define NO_SUCH_SERVICE 1000            /* inside the doorbell window, unassigned */
#define WILD_BLOCK 0x00000400u          /* unmapped: below every device and RAM */

static void ring(unsigned int service, uint32_t block)
{
    *(volatile uint32_t *)(uintptr_t)(KALLOC_DOORBELL_BASE + 4u * service) = block;
}

int main(void)
{
    uint32_t block[KH_BLOCK_SIZE / 4] = { 0 };

    printf("ringing doorbell %d\n", NO_SUCH_SERVICE);
    ring(NO_SUCH_SERVICE, (uint32_t)(uintptr_t)block);
    printf("KH_KMALLOC with a wild block pointer\n");
    ring(KH_KMALLOC, WILD_BLOCK);
    printf("survived\n");
    return 0;
}
