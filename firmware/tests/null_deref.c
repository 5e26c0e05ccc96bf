/* null_deref.c — loads from address 0 inside do_null_deref(): a fault report
 * naming do_null_deref, exit status 65. */
#include <stdio.h>

/* volatile, so GCC cannot see the NULL and replace the load with a trap */
static int *volatile null_pointer;

/* Not a leaf (it calls printf), so its frame holds ra: in a leaf, GCC may
 * restore s0 before the faulting load and the walk would skip main. */
__attribute__((noinline)) int do_null_deref(int *p)
{
    int v = *(volatile int *)p;

    printf("loaded %d\n", v);              /* never reached */
    return v;
}

int main(void)
{
    printf("about to load from NULL\n");
    return do_null_deref(null_pointer);
}
