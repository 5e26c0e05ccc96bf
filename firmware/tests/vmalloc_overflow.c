/*
 * vmalloc_overflow.c — writes one byte past the end of a vmalloc area.
 * The page after every area is an unmapped guard page, so the store is a
 * page fault in fill_table() (exit status 65), naming the area and the line
 * that vmalloc'ed it.
 */
#include <kalloc.h>
#include <stdio.h>

__attribute__((noipa)) static void fill_table(unsigned char *t, size_t n)
{
    for (size_t i = 0; i <= n; i++)   /* <= : one past the end */
        t[i] = (unsigned char)i;
}

int main(void)
{
    unsigned char *t = vmalloc(2 * PAGE_SIZE);

    printf("table at %p\n", (void *)t);
    fill_table(t, 2 * PAGE_SIZE);
    printf("not reached\n");
    return 0;
}
