/* illegal.c — executes an illegal instruction inside do_illegal(): a cpu-fault
 * report naming do_illegal and its file:line, exit status 65. */
#include <stdio.h>

__attribute__((noinline)) void do_illegal(void)
{
    __asm__ volatile(".4byte 0xffffffff");
}

int main(void)
{
    printf("about to execute an illegal instruction\n");
    do_illegal();
    printf("still alive?\n");
    return 0;
}
