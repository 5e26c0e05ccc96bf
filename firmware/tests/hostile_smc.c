/* hostile_smc.c — self-modifying code: instructions written into a kmalloc
 * buffer, run, rewritten, run again. Legal on this machine (RAM is executable,
 * Unicorn retranslates written code): the second call must see the new code.
 * Exit code 0 when both calls returned what their code says. */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

typedef int (*fn_t)(void);

/* addi a0, x0, imm ; jalr x0, 0(ra) */
static void emit(volatile uint32_t *code, int imm)
{
    code[0] = ((uint32_t)(imm & 0xfff) << 20) | (10u << 7) | 0x13u;
    code[1] = 0x00008067u;
    __asm__ volatile(".option push\n.option arch, +zifencei\nfence.i\n.option pop" ::: "memory");
}

int main(void)
{
    volatile uint32_t *code = kmalloc(64, GFP_KERNEL);
    int first, second;

    emit(code, 42);
    first = ((fn_t)(uintptr_t)code)();
    emit(code, 7);
    second = ((fn_t)(uintptr_t)code)();
    printf("smc: %d then %d\n", first, second);
    kfree((void *)code);
    void *q = kmalloc(100, GFP_KERNEL);
    kfree(q);
    return (first == 42 && second == 7) ? 0 : 1;
}
