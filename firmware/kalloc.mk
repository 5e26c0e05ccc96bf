# kalloc.mk — build your own firmware against the kalloc SDK from your own Makefile.
#
#   include $(shell kalloc sdk --prefix)/kalloc.mk
#
#   OBJS := $(KALLOC_BUILD)/src/main.o $(KALLOC_BUILD)/src/util/label.o
#   app.elf: $(OBJS) libring.a
#   	$(KALLOC_LINK)
#   libring.a: $(KALLOC_BUILD)/lib/ring/ring.o
#   	$(KALLOC_ARCHIVE)
#
# The pattern rule compiles any `$(KALLOC_BUILD)/path/x.o` from `path/x.c` (or
# `.S`) of your tree with the SDK's flags, then your CPPFLAGS and CFLAGS (add -I,
# -D, -O there). KASAN=1 selects the compiled-KASAN variant (your code
# instrumented, libkalloc_sdk_kasan.a linked); keep each variant's objects apart
# (KALLOC_BUILD=build-kasan). KALLOC_STACK_SIZE=16K sets the stack (default 256K).
# KALLOC_ARCH=armv7m builds for the Cortex-M4 machine (board stm32f4; default
# rv32imac): arm-none-eabi-gcc, Thumb-2 soft float, arm/link.ld, build/armv7m's
# library (the values of `kalloc sdk --arch armv7m` and kalloc-armv7m.pc).
#
# Variables (the same values as `kalloc sdk --cflags/--ldflags/--libs [--kasan]`
# and kalloc.pc; tests/cli/test_sdk_lib_make.py checks they agree):
#   KALLOC_PREFIX      the SDK directory (this file's)
#   KALLOC_CC, KALLOC_AR  the cross compiler and archiver (KALLOC_CROSS prefix)
#   KALLOC_CFLAGS      compile flags of the chosen variant (+ -MMD -MP and a
#                      -ffile-prefix-map making your paths relative in reports)
#   KALLOC_LDFLAGS     link flags: arch, -nostartfiles, the linker script
#   KALLOC_LIBS        the SDK library of the chosen variant, linked whole (last)
#   KALLOC_LINK        a recipe: link $@ from the .o and .a prerequisites
#   KALLOC_ARCHIVE     a recipe: a deterministic static library $@ of the .o prerequisites
# The SDK is linked whole, after your objects and libraries: its malloc family,
# mem*/str* and stdio win over picolibc's.

KALLOC_PREFIX := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
KALLOC_ARCH ?= rv32imac
ifeq ($(KALLOC_ARCH),armv7m)
  KALLOC_CROSS ?= arm-none-eabi-
  KALLOC_ARCH_FLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft --specs=$(KALLOC_PREFIX)/arm/kalloc.specs
  KALLOC_LDS := $(KALLOC_PREFIX)/arm/link.ld
  KALLOC_LIBDIR := $(KALLOC_PREFIX)/build/armv7m
else ifeq ($(KALLOC_ARCH),rv32imac)
  KALLOC_CROSS ?= riscv64-unknown-elf-
  KALLOC_ARCH_FLAGS := -march=rv32imac -mabi=ilp32 --specs=$(KALLOC_PREFIX)/kalloc.specs
  KALLOC_LDS := $(KALLOC_PREFIX)/link.ld
  KALLOC_LIBDIR := $(KALLOC_PREFIX)/build
else
  $(error KALLOC_ARCH=$(KALLOC_ARCH): give rv32imac (the default) or armv7m)
endif
KALLOC_CC := $(KALLOC_CROSS)gcc
KALLOC_AR := $(KALLOC_CROSS)ar
KALLOC_BUILD ?= build

KALLOC_PLAIN_CFLAGS := $(KALLOC_ARCH_FLAGS) -fno-omit-frame-pointer -fno-optimize-sibling-calls -g \
	-ffunction-sections -fdata-sections -I$(KALLOC_PREFIX)/include
KALLOC_KASAN_FLAGS := -fsanitize=kernel-address --param=asan-instrumentation-with-call-threshold=0 \
	--param=asan-stack=0 --param=asan-globals=0
KALLOC_LDFLAGS := $(KALLOC_ARCH_FLAGS) -nostartfiles -T $(KALLOC_LDS) -Wl,--gc-sections \
	-Wl,--build-id=none
KALLOC_PLAIN_LIBS := -Wl,--whole-archive $(KALLOC_LIBDIR)/libkalloc_sdk.a -Wl,--no-whole-archive
KALLOC_KASAN_LIBS := -Wl,--whole-archive $(KALLOC_LIBDIR)/libkalloc_sdk_kasan.a -Wl,--no-whole-archive

ifdef KASAN
  KALLOC_CFLAGS := $(KALLOC_PLAIN_CFLAGS) $(KALLOC_KASAN_FLAGS)
  KALLOC_LIBS := $(KALLOC_KASAN_LIBS)
else
  KALLOC_CFLAGS := $(KALLOC_PLAIN_CFLAGS)
  KALLOC_LIBS := $(KALLOC_PLAIN_LIBS)
endif
ifdef KALLOC_STACK_SIZE
  KALLOC_LDFLAGS += -Wl,--defsym=__kalloc_stack_size=$(KALLOC_STACK_SIZE)
endif

KALLOC_MAP = -ffile-prefix-map=$(CURDIR)=. -Wa,--debug-prefix-map=$(CURDIR)=.

KALLOC_LINK = $(KALLOC_CC) $(KALLOC_LDFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) \
	$(LDLIBS) $(KALLOC_LIBS)
KALLOC_ARCHIVE = rm -f $@ && $(KALLOC_AR) rcsD $@ $(filter %.o,$^)

$(KALLOC_BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(KALLOC_CC) $(KALLOC_CFLAGS) $(KALLOC_MAP) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(KALLOC_BUILD)/%.o: %.S
	@mkdir -p $(@D)
	$(KALLOC_CC) $(KALLOC_CFLAGS) $(KALLOC_MAP) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@
