/* hostile_jump_doorbell.c — a call through a function pointer into the hypercall doorbells
 * page. Executing from the doorbells is a CPU fault (cpu-fault, exit 65),
 * reported at the jump with its backtrace; no service runs. */
#include <stdint.h>

#include "kalloc.h"

typedef void (*fn_t)(void);

__attribute__((noinline)) void call_at(uintptr_t addr)
{
    ((fn_t)addr)();
}

int main(void)
{
    void *p = kmalloc(32, GFP_KERNEL);

    kfree(p);
    call_at(0x11000000u); /* DOORBELL_BASE */
    return 0;
}
