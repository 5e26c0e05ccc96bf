/*
 * null_check.c — the bug fault injection finds: make_name() does not check
 * malloc's result. Runs cleanly unless an allocation fails; with
 * --fail-site make_name the store dereferences NULL (cpu-fault).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noipa)) static char *make_name(int i)
{
    char *name = malloc(16);

    __asm__ volatile("" : : "r"(name) : "memory");  /* keep the allocation real */

    name[0] = 'n';                              /* no NULL check */
    name[1] = (char)('0' + i);
    name[2] = '\0';
    return name;
}

int main(void)
{
    char *names[4];

    for (int i = 0; i < 4; i++)
        names[i] = make_name(i);
    printf("%s %s %s %s\n", names[0], names[1], names[2], names[3]);
    for (int i = 0; i < 4; i++)
        free(names[i]);
    return 0;
}
