/* hostile_jump_mmio.c — a call through a function pointer into the UART's MMIO
 * window. Executing from device memory is a CPU fault (cpu-fault, exit 65),
 * reported at the jump with its backtrace; the UART is never "executed". */
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
    call_at(0x10000000u); /* UART_BASE */
    return 0;
}
