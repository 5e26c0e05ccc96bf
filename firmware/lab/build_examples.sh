#!/bin/sh
# build_examples.sh — rebuilds the example students of `kalloc lab`
# (firmware/lab/examples/*.c) into firmware/build/lab/*.elf, with the LAB=1
# path of the SDK's Makefile, and the KASAN_EXAMPLES again with KASAN=1 into
# firmware/build/lab/kasan_*.elf (for `kalloc lab --sanitize=kasan`). Run it
# after a change to the SDK library (the ELFs link firmware/build/libkalloc_sdk.a
# and libkalloc_sdk_kasan.a) or to firmware/lab, and commit the ELFs.
set -eu
fw=$(cd "$(dirname "$0")/.." && pwd)
KASAN_EXAMPLES="implicit segregated prev_header overrun"
mkdir -p "$fw/build/lab"
for src in "$fw"/lab/examples/*.c; do
    name=$(basename "$src" .c)
    make -s -C "$fw" LAB=1 APP="$src" OUT="$fw/build/lab/$name.elf"
done
for name in $KASAN_EXAMPLES; do
    make -s -C "$fw" LAB=1 KASAN=1 APP="$fw/lab/examples/$name.c" OUT="$fw/build/lab/kasan_$name.elf"
done
