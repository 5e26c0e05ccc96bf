/*
 * arena_heap.c — malloc under `kalloc run --heap arena`: the heap grows by
 * committing pages at its top and shrinks by unmapping them. Prints the free
 * page count at each step so the host can see pages taken and given back.
 * Under other heaps it runs the same (the counts then show slab/page use).
 */
#include <kalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 24

int main(void)
{
    static char *blocks[N];
    unsigned long start = nr_free_pages();

    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(3000);
        if (!blocks[i])
            return 2;
        memset(blocks[i], i, 3000);
    }
    unsigned long grown = nr_free_pages();
    int bad = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < 3000; j++)
            bad += blocks[i][j] != (char)i;
    for (int i = N - 1; i >= 0; i--)
        free(blocks[i]);
    unsigned long shrunk = nr_free_pages();
    char *s = malloc(100);
    strcpy(s, "arena says hi");
    printf("%s at %p\n", s, (void *)s);
    free(s);
    printf("free pages: start %lu, grown %lu, shrunk %lu, data %s\n", start, grown, shrunk,
           bad ? "BAD" : "ok");
    return bad ? 1 : 0;
}
