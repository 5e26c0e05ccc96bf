/*
 * vmalloc_uaf.c — reads a vmalloc area after vfree(). vfree unmaps the pages
 * (and the machine flushes the CPU's TLB), so the read is a page fault in
 * read_after_vfree() naming both the allocation and the vfree site.
 */
#include <kalloc.h>
#include <stdio.h>

__attribute__((noipa)) static int read_after_vfree(const int *p)
{
    return p[100];
}

int main(void)
{
    int *p = vmalloc(8192);

    p[100] = 42;
    printf("before vfree: %d\n", read_after_vfree(p));
    vfree(p);
    printf("after vfree: %d\n", read_after_vfree(p));
    return 0;
}
