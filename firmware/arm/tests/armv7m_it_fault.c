/*
 * armv7m_it_fault.c — faulting and detected accesses made by a conditional instruction inside a
 * Thumb IT block, on the stm32f4 board. Unicorn 2.1.4 forbids a stop inside an IT block
 * (isa/../rawcount.py), so the machine's exact stop at such an access must still hold.
 * `mode` (written by the test before the run):
 *  1 `streq` to an unmapped address inside an IT block: one cpu-fault at that store
 *  2 `streq` into a vfree()d vmalloc area inside an IT block: one page-fault report
 *  3 `ldreq` from a kfree()d object inside an IT block (poison/KASAN modes report it)
 *  4 `streq` starting SysTick inside an IT block (a device cut): r12 and the code after it
 *    must run once, as on the CPU (prints r12 and how many times the line after ran)
 *  5 `streq` then `ldreq` on a live kmalloc() object inside IT blocks: clean under every mode
 *    (under hook-mode KASAN the engine's restored IT state made the firmware skip an instruction)
 * After the access the firmware prints and exits 0, so a lost stop shows as a run that goes on.
 */
#include <stdint.h>
#include <stdio.h>

#include "kalloc.h"

volatile uint32_t mode = 0x100;

__attribute__((noipa)) static void store_if(int cond, volatile uint32_t *p, uint32_t v)
{
    __asm__ volatile("cmp %0, #1\n\tite eq\n\tstreq %1, [%2]\n\taddne %1, %1, #1\n"
                     : : "r"(cond), "r"(v), "r"(p) : "cc", "memory");
}

__attribute__((noipa)) static uint32_t load_if(int cond, volatile uint32_t *p)
{
    uint32_t v = 7;
    __asm__ volatile("cmp %1, #1\n\tite eq\n\tldreq %0, [%2]\n\taddne %0, %0, #1\n"
                     : "+r"(v) : "r"(cond), "r"(p) : "cc", "memory");
    return v;
}

static volatile uint32_t after;

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    *(volatile uint32_t *)0xE000E010u = 0; /* SYST_CSR: stop */
}

__attribute__((noipa)) static uint32_t start_systick_if(int cond)
{
    uint32_t r12;

    *(volatile uint32_t *)0xE000E014u = 200u; /* SYST_RVR */
    __asm__ volatile("mov r12, #77\n\tcmp %1, #1\n\tit eq\n\tstreq %2, [%3]\n\tmov %0, r12\n"
                     : "=r"(r12) : "r"(cond), "r"(7u), "r"(0xE000E010u) : "r12", "cc", "memory");
    after++;
    return r12;
}

int main(void)
{
    uint32_t m = mode & 0xff;
    if (m == 1) {
        store_if(1, (volatile uint32_t *)0x70000000u, 5);
    } else if (m == 2) {
        uint32_t *area = vmalloc(8192);
        area[3] = 1;
        vfree(area);
        store_if(1, area + 100, 5);
    } else if (m == 3) {
        uint32_t *obj = kmalloc(64, GFP_KERNEL);
        obj[2] = 9;
        kfree(obj);
        printf("read %u\n", (unsigned)load_if(1, obj + 2));
    } else if (m == 4) {
        request_irq(KALLOC_IRQ_TIMER, on_tick, 0);
        uint32_t r12 = start_systick_if(1);
        printf("r12 %u after %u\n", (unsigned)r12, (unsigned)after);
        if (r12 != 77u || after != 1u)
            return 3;
    } else if (m == 5) {
        uint32_t *obj = kmalloc(64, GFP_KERNEL);
        store_if(1, obj + 3, 11);
        printf("stored %u\n", (unsigned)obj[3]);
        printf("read %u\n", (unsigned)load_if(1, obj + 3));
        kfree(obj);
    }
    printf("went on after the access (mode %u)\n", (unsigned)m);
    return 0;
}
