#include "label.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

/* A heap copy of text; with APP_OVERRUN the terminating NUL lands one byte past
 * the object. noipa and volatile keep the store whatever the optimization level. */
__attribute__((noipa)) char *label_make(const char *text)
{
    size_t n = strlen(text);
    volatile char *p = malloc(n + LABEL_EXTRA);
    if (!p)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        p[i] = text[i];
    return (char *)p;
}
