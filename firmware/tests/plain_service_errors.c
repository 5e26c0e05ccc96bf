/*
 * plain_service_errors.c — services that never read their caller (NOP, BOOTINFO,
 * NR_FREE_PAGES: the bridge walks no call site for them) still
 * name their call site when they fail. Each bad call is made from its own
 * function, through the SDK's stub, with a buffer that is not RAM: the reports
 * (bad-hypercall) must name write_nowhere and boot_nowhere, as
 * they did when every call walked its site first (tests/machine/test_plain_services.py).
 */
#include <kalloc.h>
#include <stdint.h>
#include <stdio.h>

#include "../sdk/hcall.h"

#define NOWHERE 0x00000400u /* unmapped: below every device and RAM */

/* SDK-style wrappers: the site is where they are called from (their return address) */
static KH_API long console_to_nowhere(void)
{
    return (long)KH_CALL2(KH_CONSOLE_WRITE, NOWHERE, 8).result;
}

static KH_API long bootinfo_to_nowhere(void)
{
    return (long)KH_CALL2(KH_BOOTINFO, NOWHERE, 16).result;
}

__attribute__((noipa)) static long write_nowhere(void)
{
    return console_to_nowhere();
}

__attribute__((noipa)) static long boot_nowhere(void)
{
    return bootinfo_to_nowhere();
}

int main(void)
{
    for (int i = 0; i < 100; i++)
        (void)KH_CALL0(KH_NOP);
    long pages = (long)nr_free_pages();
    long wrote = write_nowhere();
    long got = boot_nowhere();
    printf("free pages %s, console %ld, bootinfo %ld\n", pages > 0 ? "some" : "none", wrote, got);
    return 0;
}
