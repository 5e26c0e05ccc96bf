/* spin.c — loops forever in spin_forever(): the run ends on the instruction
 * budget or the timeout, exit status 66. */
#include <stdio.h>

static volatile unsigned long counter;

__attribute__((noinline, noreturn)) void spin_forever(void)
{
    for (;;)
        counter++;
}

int main(void)
{
    printf("spinning\n");
    spin_forever();
}
