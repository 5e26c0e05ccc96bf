/* irqs_off.c — a GFP_KERNEL allocation with interrupts disabled: kalloc
 * reports invalid-context naming main. */
#include <stdio.h>

#include "kalloc.h"

int main(void)
{
    unsigned long flags;
    void *p;

    local_irq_save(flags);
    p = kmalloc(64, GFP_KERNEL);
    local_irq_restore(flags);
    printf("allocated with interrupts off\n");
    kfree(p);
    return 0;
}
