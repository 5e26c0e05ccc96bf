#!/bin/sh
# build_examples.sh — rebuilds the example students of `kalloc lab`
# (firmware/lab/examples/*.c) into firmware/build/lab/*.elf, with the LAB=1
# path of the SDK's Makefile. Run it after a change to the SDK library (the
# ELFs link firmware/build/libkalloc_sdk.a) and commit the ELFs.
set -eu
fw=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$fw/build/lab"
for src in "$fw"/lab/examples/*.c; do
    name=$(basename "$src" .c)
    make -s -C "$fw" LAB=1 APP="$src" OUT="$fw/build/lab/$name.elf"
done
