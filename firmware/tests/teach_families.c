/*
 * teach_families.c — one allocation pattern for comparing allocator families
 * (docs/teaching.md, "Allocator families"; tests/cli/test_teaching_sessions.py).
 *
 * A game-style session in 8 levels: each level loads 40 small entities (48
 * bytes, half of them kept to the end: long-lived small objects), 6 large
 * temporary buffers (3-9 KiB, freed when the level ends) and a growing
 * string table (realloc by 25%). Run it under each --heap and record its
 * trace (--record) to replay it through every heap policy and through the
 * lab's reference allocators. The pattern is the fragmentation one: small
 * survivors land between the large buffers' holes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEVELS 8
#define ENTITIES 40
#define BUFFERS 6

static void *kept[LEVELS * ENTITIES / 2];

int main(void)
{
    unsigned int nkept = 0, table_size = 256;
    char *table = malloc(table_size);

    if (!table)
        return 1;
    for (int level = 0; level < LEVELS; level++) {
        void *ent[ENTITIES], *buf[BUFFERS];

        for (int i = 0; i < BUFFERS; i++) {
            buf[i] = malloc(3072 + 1024 * ((level + i) % 7));
            if (buf[i])
                memset(buf[i], level, 64);
        }
        for (int i = 0; i < ENTITIES; i++) {
            ent[i] = malloc(48);
            if (ent[i])
                memset(ent[i], i, 48);
        }
        table_size += table_size / 4;
        char *grown = realloc(table, table_size);
        if (!grown)
            break;
        table = grown;
        for (int i = 0; i < ENTITIES; i++) {
            if (i % 2 == 0)
                kept[nkept++] = ent[i];
            else
                free(ent[i]);
        }
        for (int i = 0; i < BUFFERS; i++)
            free(buf[i]);
    }
    printf("families: %u entities kept, string table %u bytes\n", nkept, table_size);
    for (unsigned int i = 0; i < nkept; i++)
        free(kept[i]);
    free(table);
    return 0;
}
