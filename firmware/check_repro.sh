#!/bin/sh
# check_repro.sh — rebuilds the shipped ELFs and SDK libraries
# (libkalloc_sdk.a, libkalloc_sdk_kasan.a) in a temporary directory and
# compares them byte for byte with the committed ones in firmware/build/.
#
# Only meaningful with the toolchain recorded in firmware/TOOLCHAIN (line 1:
# `riscv64-unknown-elf-gcc --version | head -1`, line 2: the picolibc
# package and version); with any other it says so and skips the comparison.
# The Cortex-M build (firmware/build/armv7m/: its SDK libraries and every
# committed ARM ELF, rebuilt with `make ARCH=armv7m`) is compared likewise when
# the ARM toolchain matches TOOLCHAIN's lines 3-4 (arm-none-eabi-gcc,
# picolibc-arm-none-eabi); the ARM build ships a chosen subset of the test
# firmware, so only the committed ARM ELFs are rebuilt and compared. The lab's example
# students (firmware/build/lab/, LAB=1 and KASAN=1 builds; their deliberate warnings
# silenced) are compared too.
# Exit status: 0 identical or skipped, 1 some ELF or library differs or is missing.
set -eu

fw=$(cd "$(dirname "$0")" && pwd)
cc="${CROSS:-riscv64-unknown-elf-}gcc"

want_cc=$(sed -n 1p "$fw/TOOLCHAIN")
want_libc=$(sed -n 2p "$fw/TOOLCHAIN")
have_cc=$("$cc" --version 2>/dev/null | head -1 || true)
have_libc=$(dpkg-query -W -f '${Package} ${Version}' picolibc-riscv64-unknown-elf 2>/dev/null || true)
if [ "$want_cc" != "$have_cc" ] || [ "$want_libc" != "$have_libc" ]; then
    echo "toolchain differs, skipping byte comparison"
    echo "  recorded:  $want_cc / $want_libc"
    echo "  installed: ${have_cc:-none} / ${have_libc:-none}"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
make -s -C "$fw" BUILD="$tmp" elfs libs >/dev/null

# compare_built FILE...: each file rebuilt under $tmp against its committed twin under
# firmware/build; prints what differs or is missing, returns 1 if anything did.
compare_built() {
    rc=0
    for built in "$@"; do
        rel=${built#"$tmp"/}
        if [ ! -f "$fw/build/$rel" ]; then
            echo "not committed: firmware/build/$rel"
            rc=1
        elif ! cmp -s "$built" "$fw/build/$rel"; then
            echo "differs from its rebuild: firmware/build/$rel"
            rc=1
        fi
    done
    return $rc
}

status=0
compare_built "$tmp"/*.elf "$tmp"/tests/*.elf "$tmp"/bench/*.elf "$tmp"/fastpath/*.bin "$tmp"/*.a || status=1
for committed in "$fw"/build/*.elf "$fw"/build/tests/*.elf "$fw"/build/bench/*.elf "$fw"/build/*.a; do
    rel=${committed#"$fw"/build/}
    if [ ! -f "$tmp/$rel" ]; then
        echo "no source builds it any more: firmware/build/$rel"
        status=1
    fi
done
[ $status -eq 0 ] && echo "firmware ELFs and SDK libraries are reproducible: rebuild is byte-identical"

# The malloc lab's example students (firmware/lab/build_examples.sh builds them): every
# example with LAB=1, and each committed kasan_NAME.elf again with KASAN=1.
lab_status=0
mkdir -p "$tmp/lab"
for src in "$fw"/lab/examples/*.c; do
    name=$(basename "$src" .c)
    make -s -C "$fw" LAB=1 APP="$src" OUT="$tmp/lab/$name.elf" >/dev/null 2>&1 \
        || { echo "the lab example does not build: firmware/lab/examples/$name.c"; exit 1; }
done
for committed in "$fw"/build/lab/kasan_*.elf; do
    [ -f "$committed" ] || continue
    name=$(basename "$committed" .elf)
    make -s -C "$fw" LAB=1 KASAN=1 APP="$fw/lab/examples/${name#kasan_}.c" OUT="$tmp/lab/$name.elf" \
        >/dev/null 2>&1 || { echo "the lab example does not build with KASAN=1: ${name#kasan_}.c"; exit 1; }
done
compare_built "$tmp"/lab/*.elf || lab_status=1
for committed in "$fw"/build/lab/*.elf; do
    [ -f "$tmp/lab/${committed##*/}" ] || { echo "no source builds it any more: firmware/build/lab/${committed##*/}"; lab_status=1; }
done
[ $lab_status -eq 0 ] && echo "the lab's example ELFs are reproducible: rebuild is byte-identical"
[ $lab_status -eq 0 ] || status=1

# The Cortex-M build: its libraries and the committed ARM ELFs, rebuilt by name.
want_arm_cc=$(sed -n 3p "$fw/TOOLCHAIN")
want_arm_libc=$(sed -n 4p "$fw/TOOLCHAIN")
have_arm_cc=$(arm-none-eabi-gcc --version 2>/dev/null | head -1 || true)
have_arm_libc=$(dpkg-query -W -f '${Package} ${Version}' picolibc-arm-none-eabi 2>/dev/null || true)
if [ "$want_arm_cc" != "$have_arm_cc" ] || [ "$want_arm_libc" != "$have_arm_libc" ]; then
    echo "ARM toolchain differs, skipping the Cortex-M byte comparison"
    echo "  recorded:  $want_arm_cc / $want_arm_libc"
    echo "  installed: ${have_arm_cc:-none} / ${have_arm_libc:-none}"
    exit $status
fi
arm_status=0
targets=""
for committed in "$fw"/build/armv7m/*.elf "$fw"/build/armv7m/tests/*.elf "$fw"/build/armv7m/bench/*.elf; do
    [ -f "$committed" ] && targets="$targets $tmp/armv7m/${committed#"$fw"/build/armv7m/}"
done
make -s -C "$fw" ARCH=armv7m BUILD="$tmp/armv7m" libs $targets >/dev/null
for committed in "$fw"/build/armv7m/*.a $targets; do
    rel=${committed#"$tmp"/armv7m/}
    rel=${rel#"$fw"/build/armv7m/}
    if ! cmp -s "$tmp/armv7m/$rel" "$fw/build/armv7m/$rel"; then
        echo "differs from its rebuild: firmware/build/armv7m/$rel"
        arm_status=1
    fi
done
[ $arm_status -eq 0 ] && echo "Cortex-M ELFs and SDK libraries are reproducible: rebuild is byte-identical"
[ $arm_status -eq 0 ] || status=1
exit $status
