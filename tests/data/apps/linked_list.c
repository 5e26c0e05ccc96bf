#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node { struct node *next; int value; };

int main(void)
{
    struct node *head = NULL;
    for (int i = 0; i < 10; i++) {
        struct node *n = malloc(sizeof *n);
        if (!n)
            return 1;
        n->value = i;
        n->next = head;
        head = n;
    }
    int sum = 0;
    while (head) {
        struct node *next = head->next;
        sum += head->value;
        free(head);
        head = next;
    }
    char *s = strdup("out of tree");
    printf("%s: sum=%d\n", s, sum);
    free(s);
    return sum == 45 ? 0 : 2;
}
