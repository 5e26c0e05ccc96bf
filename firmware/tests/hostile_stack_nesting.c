/* hostile_stack_nesting.c — deep but bounded recursion that must run clean
 * with the SDK's default stack: a small recursive-descent JSON parser shaped
 * like cJSON's (parse_value -> parse_array -> parse_value, a 64-byte number
 * buffer in parse_value, a nesting limit of 1000 like CJSON_NESTING_LIMIT),
 * fed 1000 nested arrays, then printed and deleted recursively, as cJSON's
 * misc_tests do. Exit status 0, no error, no leak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NESTING_LIMIT 1000

struct node {
    struct node *next, *child;
    int type;  /* 0 number, 1 array */
    double number;
};

struct input {
    const char *text;
    size_t length, offset, depth;
};

static int parse_value(struct node *item, struct input *in);

static struct node *new_node(void)
{
    return calloc(1, sizeof(struct node));
}

static void delete_node(struct node *item)
{
    while (item) {
        struct node *next = item->next;

        if (item->child)
            delete_node(item->child);
        free(item);
        item = next;
    }
}

static int parse_number(struct node *item, struct input *in)
{
    char digits[64];
    size_t i = 0;
    char *end;

    while (i < sizeof(digits) - 1 && in->offset + i < in->length &&
           strchr("0123456789+-eE.", in->text[in->offset + i]))
        digits[i] = in->text[in->offset + i], i++;
    digits[i] = '\0';
    item->number = strtod(digits, &end);
    if (end == digits)
        return 0;
    item->type = 0;
    in->offset += (size_t)(end - digits);
    return 1;
}

static int parse_array(struct node *item, struct input *in)
{
    struct node *head = NULL, *last = NULL;

    if (in->depth >= NESTING_LIMIT)
        return 0;
    in->depth++;
    in->offset++;  /* '[' */
    if (in->offset < in->length && in->text[in->offset] == ']')
        goto done;
    do {
        struct node *child = new_node();

        if (!child)
            goto fail;
        if (last)
            last->next = child;
        else
            head = child;
        last = child;
        if (!parse_value(child, in))
            goto fail;
    } while (in->offset < in->length && in->text[in->offset] == ',' && ++in->offset);
    if (in->offset >= in->length || in->text[in->offset] != ']')
        goto fail;
done:
    in->depth--;
    in->offset++;
    item->type = 1;
    item->child = head;
    return 1;
fail:
    delete_node(head);
    return 0;
}

static int parse_value(struct node *item, struct input *in)
{
    if (in->offset >= in->length)
        return 0;
    if (in->text[in->offset] == '[')
        return parse_array(item, in);
    return parse_number(item, in);
}

static size_t print_value(const struct node *item, char *out, size_t pos)
{
    if (item->type == 0)
        return pos + (size_t)sprintf(out + pos, "%g", item->number);
    out[pos++] = '[';
    for (const struct node *c = item->child; c; c = c->next) {
        pos = print_value(c, out, pos);
        if (c->next)
            out[pos++] = ',';
    }
    out[pos++] = ']';
    return pos;
}

static struct node *parse(const char *text, size_t length)
{
    struct input in = {text, length, 0, 0};
    struct node *root = new_node();

    if (root && !parse_value(root, &in)) {
        delete_node(root);
        return NULL;
    }
    return root;
}

int main(void)
{
    size_t n = NESTING_LIMIT;
    char *text = malloc(2 * n + 2);
    char *out = malloc(2 * n + 16);
    struct node *root;

    memset(text, '[', n);
    text[n] = '7';
    memset(text + n + 1, ']', n);
    text[2 * n + 1] = '\0';
    root = parse(text, 2 * n + 1);
    if (!root) {
        printf("parse failed\n");
        return 1;
    }
    out[print_value(root, out, 0)] = '\0';
    printf("%zu nested arrays parsed and printed back: %s\n", n, strcmp(out, text) ? "different" : "same");
    delete_node(root);
    /* one level more than the limit is refused, as cJSON does: no overflow */
    text[n] = '[';
    printf("%zu levels: %s\n", n + 1, parse(text, 2 * n + 1) ? "parsed" : "refused");
    free(text);
    free(out);
    return 0;
}
