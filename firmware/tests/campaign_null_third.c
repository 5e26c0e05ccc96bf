/*
 * campaign_null_third.c — a firmware that checks every allocation but one:
 * the third (make_label's malloc) is dereferenced without a NULL check. Run
 * unperturbed it is clean; `kalloc campaign --fail-each` finds the one bug, a
 * cpu-fault at the store through NULL, reproduced by `--fail-nth 3`. Failing
 * any other request makes main return 1 after freeing what it holds: correct.
 */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noipa)) static int *make_table(int n)
{
    int *t = malloc(n * sizeof(int));

    if (!t)
        return NULL;
    for (int i = 0; i < n; i++)
        t[i] = i;
    return t;
}

__attribute__((noipa)) static char *make_label(void)
{
    char *s = malloc(8);

    __asm__ volatile("" : : "r"(s) : "memory");  /* keep the allocation real */
    s[0] = 'x';                                  /* the bug: no NULL check */
    s[1] = '\0';
    return s;
}

int main(void)
{
    int *a = make_table(4);                      /* request 1 */
    int *b;
    char *label;
    char *tail;

    if (!a)
        return 1;
    b = make_table(8);                           /* request 2 */
    if (!b) {
        free(a);
        return 1;
    }
    label = make_label();                        /* request 3: unchecked */
    tail = malloc(32);                           /* request 4 */
    if (!tail) {
        free(label);
        free(b);
        free(a);
        return 1;
    }
    printf("%s %d %d\n", label, a[3], b[7]);
    free(tail);
    free(label);
    free(b);
    free(a);
    return 0;
}
