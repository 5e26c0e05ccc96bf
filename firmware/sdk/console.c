/*
 * console.c — the UART, and picolibc's stdin/stdout/stderr on top of it.
 *
 * stdio writes one byte store per character, unbuffered: a buffer would need
 * flushing at exit, at a panic and (the case that matters) before a CPU fault,
 * where the last unflushed line is exactly the one that explains the crash.
 * uart_write() hands a whole buffer to the host in one KH_CONSOLE_WRITE.
 * Both reach the same UART in program order.
 */
#include <stdio.h>

#include "hcall.h"
#include "sdk.h"

void uart_putc(char c)
{
    KALLOC_REG8(kalloc_bootinfo.uart_base, KALLOC_UART_TX) = (uint8_t)c;
}

KH_API void uart_write(const void *buf, size_t len)
{
    KH_CALL2(KH_CONSOLE_WRITE, buf, len);
}

static int stdio_put(char c, FILE *file)
{
    (void)file;
    uart_putc(c);
    return (unsigned char)c;
}

/* Write-only: reads from stdin see end of file. */
static FILE kalloc_stdio = FDEV_SETUP_STREAM(stdio_put, NULL, NULL, _FDEV_SETUP_WRITE);

FILE *const stdin = &kalloc_stdio;
FILE *const stdout = &kalloc_stdio;
FILE *const stderr = &kalloc_stdio;
