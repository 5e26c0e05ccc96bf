/*
 * leak_lost_kinds.c — leaks of each shape Valgrind's Memcheck tells apart.
 *
 *   leak_list():  a 4-node list (24-byte nodes from list_node); the pointer to its
 *                 head is dropped: head definitely lost, the 3 other nodes
 *                 indirectly lost (only the lost list points to them).
 *   leak_tree():  a 7-node binary tree (40-byte nodes from tree_node); the root is
 *                 dropped: root definitely lost, 6 nodes indirectly lost.
 *   leak_cycle(): two 56-byte objects pointing at each other (cycle_a, cycle_b);
 *                 nothing else does: one is definitely lost (the lower address,
 *                 Memcheck's clique leader), the other indirectly lost.
 *   kept_list:    a 2-node list a global still points to: still reachable, no error.
 * main returns 0; the run's status is 64 (leaks are errors).
 */
#include <stdio.h>
#include <stdlib.h>

struct node { struct node *next; int v[5]; };            /* 24 bytes */
struct tree { struct tree *left, *right; int v[8]; };    /* 40 bytes */
struct peer { struct peer *other; int v[13]; };          /* 56 bytes */

struct node *kept_list;

static inline void escape(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");  /* the allocation and its stores are real */
}

__attribute__((noipa)) static struct node *list_node(struct node *next)
{
    struct node *n = malloc(sizeof *n);

    n->next = next;
    n->v[0] = 1;
    escape(n);
    return n;
}

__attribute__((noipa)) static struct tree *tree_node(int depth)
{
    struct tree *t = malloc(sizeof *t);

    t->left = depth > 1 ? tree_node(depth - 1) : NULL;
    t->right = depth > 1 ? tree_node(depth - 1) : NULL;
    t->v[0] = depth;
    escape(t);
    return t;
}

__attribute__((noipa)) static void leak_list(void)
{
    struct node *head = NULL;

    for (int i = 0; i < 4; i++)
        head = list_node(head);
    escape(head);
}

__attribute__((noipa)) static void leak_tree(void)
{
    escape(tree_node(3));
}

__attribute__((noipa)) static struct peer *cycle_a(void)
{
    struct peer *p = malloc(sizeof *p);

    escape(p);
    return p;
}

__attribute__((noipa)) static struct peer *cycle_b(void)
{
    struct peer *p = malloc(sizeof *p);

    escape(p);
    return p;
}

__attribute__((noipa)) static void leak_cycle(void)
{
    struct peer *a = cycle_a(), *b = cycle_b();

    a->other = b;
    b->other = a;
    escape(a);
    escape(b);
}

int main(void)
{
    kept_list = list_node(list_node(NULL));
    leak_list();
    leak_tree();
    leak_cycle();
    printf("leaked a list, a tree and a cycle\n");
    return 0;
}
