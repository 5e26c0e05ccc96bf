/* hostile_jump_data.c — a call into a zeroed array in .bss. Zero halfwords are
 * `c.unimp` on RV32C: an illegal instruction (cpu-fault, exit 65) at the array,
 * with the caller in the backtrace. */
#include <stdint.h>

#include "kalloc.h"

typedef void (*fn_t)(void);

static uint32_t blob[16];

__attribute__((noinline)) void call_at(uintptr_t addr)
{
    ((fn_t)addr)();
}

int main(void)
{
    void *p = kmalloc(32, GFP_KERNEL);

    kfree(p);
    call_at((uintptr_t)blob);
    return 0;
}
