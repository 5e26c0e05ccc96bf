#ifndef LABEL_H
#define LABEL_H

char *label_make(const char *text);

#endif
