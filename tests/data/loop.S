# Spins forever: the run ends on the instruction budget.
    .text
    .globl main
main:
    .globl spin
spin:
    j       spin
