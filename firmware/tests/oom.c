/*
 * oom.c — allocates 16 KiB blocks with GFP_KERNEL until kmalloc returns NULL
 * (an oom warning, not an error), prints the count, frees everything and
 * exits 0. The blocks are chained through their first word, so the program
 * needs no table that could itself run out.
 */
#include <stdio.h>

#include "kalloc.h"

#define BLOCK 16384

int main(void)
{
    void **head = NULL, **p;
    unsigned int count = 0;

    while ((p = kmalloc(BLOCK, GFP_KERNEL)) != NULL) {
        *p = head;
        head = p;
        count++;
    }
    printf("oom: %u allocations of %d bytes before NULL\n", count, BLOCK);
    while (head) {
        p = *head;
        kfree(head);
        head = p;
    }
    printf("freed\n");
    return 0;
}
