/* hello.c — the smallest firmware: printf to the UART, exit 0. */
#include <stdio.h>

int main(void)
{
    printf("hello, world\n");
    return 0;
}
