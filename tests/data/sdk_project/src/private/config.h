/* Private to the application (src/private is on its include path, not the library's). */
#ifndef CONFIG_H
#define CONFIG_H

#define RING_CAPACITY 8

/* APP_OVERRUN (a -D of the build) turns on a bug: the label buffer is one byte
 * too small for the string copied into it, a heap out-of-bounds write. */
#ifdef APP_OVERRUN
#define LABEL_EXTRA 0
#else
#define LABEL_EXTRA 1
#endif

#endif
