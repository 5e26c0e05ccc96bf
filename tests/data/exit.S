# main returns 7: the run ends with exit code 7.
    .text
    .globl main
main:
    li      a0, 7
    ret
