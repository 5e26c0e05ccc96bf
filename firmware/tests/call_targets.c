/* call_targets.c — functions a test calls with the pytest plugin's Target.call.
 *
 * unused_helper: defined, called by nobody, so --gc-sections drops it;
 * add_one: static and called once, so -O2 inlines it and keeps no copy;
 * twice: external, inlined into main, its copy then dropped by --gc-sections;
 * kept_helper: the same as unused_helper, kept with __attribute__((used, retain));
 * make_buffer / drop_buffer: allocate and free on the test's behalf (their
 * allocations are attributed to them, then to the test that called them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int unused_helper(int x) { return x * 3; }

static int add_one(int x) { return x + 1; }

int twice(int x) { return 2 * x; }

__attribute__((used, retain)) int kept_helper(int x) { return x * 5; }

__attribute__((noinline)) char *make_buffer(int n)
{
    char *p = malloc(n);
    if (p)
        memset(p, 'k', n);
    return p;
}

__attribute__((noinline)) void drop_buffer(char *p)
{
    free(p);
}

int main(void)
{
    volatile int n = twice(add_one(7));
    drop_buffer(make_buffer(n));
    printf("call targets ready\n");
    return 0;
}
