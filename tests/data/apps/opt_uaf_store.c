/* A write after free that GCC deletes: at -O2 (and -O1) the store to p[3]
 * follows free(p), so the compiler treats it as dead and drops it; kalloc then
 * has nothing to see. Built with OPT=-Og the store stays and kalloc reports a
 * use-after-free (tests/cli/test_sdk_lib_opt.py). */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    char *p = malloc(24);
    if (!p)
        return 1;
    p[0] = 'a';
    free(p);
    p[3] = 'x';
    printf("done\n");
    return 0;
}
