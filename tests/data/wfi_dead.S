# wfi with no interrupt enabled and nothing scheduled: it could never wake.
    .text
    .globl main
main:
    csrw    mie, zero
    .globl  sleep_forever
sleep_forever:
    wfi
    li      a0, 0
    ret
