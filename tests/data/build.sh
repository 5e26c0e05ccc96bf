#!/bin/sh
# Rebuilds the test programs of tests/test_machine.py and tests/test_elf.py.
# The ELFs are committed: the tests never need the cross toolchain.
# Usage: sh tests/data/build.sh   (needs riscv64-unknown-elf-gcc; reproducible: no host
# paths, no temporary file names, no build id)
set -eu
cd "$(dirname "$0")"
CC=${CC:-riscv64-unknown-elf-gcc}
HERE=$(pwd)
CFLAGS="-march=rv32imac_zicsr -mabi=ilp32 -g -O1 -fno-omit-frame-pointer -ffunction-sections
        -ffile-prefix-map=$HERE=. -Wa,--debug-prefix-map=$HERE=."
LDFLAGS="-march=rv32imac_zicsr -mabi=ilp32 -nostdlib -nostartfiles -static
         -Wl,--build-id=none -Wl,--no-warn-rwx-segments -T link.ld"
mkdir -p obj
trap 'rm -rf obj' EXIT
# shellcheck disable=SC2086
$CC $CFLAGS -c -o obj/start.o start.S
for src in exit.S uart.S unmapped.S loop.S timer.S wfi.S wfi_dead.S dma.S doorbell.S ecalls.S \
           illegal.c counters.S jump.S irqcount.S; do
    name="${src%.*}"
    # shellcheck disable=SC2086
    $CC $CFLAGS -c -o "obj/$name.o" "$src"
    # shellcheck disable=SC2086
    $CC $LDFLAGS -o "$name.elf" obj/start.o "obj/$name.o"
    echo "built $name.elf"
done
