/*
 * campaign_leak_path.c — an error path that leaks: open_pair() allocates a
 * header, then a body; when the body's allocation fails it returns NULL
 * without freeing the header. Unperturbed the run is clean; `kalloc campaign
 * --fail-each` finds one bug, a `leak` of the header allocated in open_pair,
 * reproduced by `--fail-nth 2`. Failing the header itself (request 1) is
 * handled correctly (main returns 2, nothing leaks).
 */
#include <stdio.h>
#include <stdlib.h>

struct pair {
    char *body;
    int len;
};

__attribute__((noipa)) static struct pair *open_pair(int len)
{
    struct pair *p = malloc(sizeof(*p));

    if (!p)
        return NULL;
    __asm__ volatile("" : : "r"(p) : "memory");
    p->len = len;
    p->body = malloc(len);
    if (!p->body)
        return NULL;                             /* the bug: p is not freed */
    p->body[0] = 'b';
    return p;
}

__attribute__((noipa)) static void close_pair(struct pair *p)
{
    free(p->body);
    free(p);
}

int main(void)
{
    struct pair *p = open_pair(48);

    if (!p)
        return 2;
    printf("pair of %d\n", p->len);
    close_pair(p);
    return 0;
}
