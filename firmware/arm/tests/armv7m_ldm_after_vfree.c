/*
 * armv7m_ldm_after_vfree.c — a struct copied out of a vmalloc area after vfree(), on the
 * stm32f4 board (tests/machine/test_armv7m_access_report.py).
 *
 * GCC copies the 16-byte struct with one `ldm r1, {r0, r1, r2, r3}` (and `stm` into the
 * destination): the read is a page fault, and the report names the words the ldm reads
 * (the 16 bytes at the struct's own address, 1600 bytes into the area), not the page.
 */
#include <stdio.h>

#include "kalloc.h"

struct quad {
    int a, b, c, d;
};

__attribute__((noipa)) static void copy_out(struct quad *dst, const struct quad *src)
{
    *dst = *src;
}

int main(void)
{
    struct quad *ring = vmalloc(8192);
    struct quad got;

    ring[100] = (struct quad){1, 2, 3, 4};
    copy_out(&got, &ring[100]);
    printf("before vfree: %d\n", got.a + got.b + got.c + got.d);
    vfree(ring);
    copy_out(&got, &ring[100]);
    printf("after vfree: %d\n", got.a + got.b + got.c + got.d);
    return 0;
}
