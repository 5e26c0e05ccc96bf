# kalloc-toolchain.cmake — cross-compile a CMake project for the kalloc machine (RV32IMAC).
#
#   cmake -S . -B build \
#     -DCMAKE_TOOLCHAIN_FILE="$(kalloc sdk --prefix)/cmake/kalloc-toolchain.cmake" \
#     -DCMAKE_PREFIX_PATH="$(kalloc sdk --prefix)"
#
# Every target of the project (your own static libraries too) is compiled for
# rv32imac/ilp32 against picolibc's headers; link an executable to kalloc::sdk
# (find_package(kalloc CONFIG), cmake/kalloc-config.cmake) to make it firmware.
# KALLOC_CROSS (default riscv64-unknown-elf-) is the cross compiler's prefix.
# -DKALLOC_ARCH=armv7m builds for the Cortex-M4 machine instead (board stm32f4):
# arm-none-eabi-gcc, -mcpu=cortex-m4 -mthumb -mfloat-abi=soft, arm/kalloc.specs;
# kalloc-config.cmake then hands out the ARM SDK (build/armv7m/, arm/link.ld).

set(CMAKE_SYSTEM_NAME Generic)
set(KALLOC_ARCH "rv32imac" CACHE STRING "the kalloc machine to build for: rv32imac or armv7m")
# try_compile re-reads this file in a project of its own: hand it the choice
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES KALLOC_ARCH KALLOC_CROSS)
get_filename_component(_kalloc_prefix "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(KALLOC_ARCH STREQUAL "armv7m")
  set(CMAKE_SYSTEM_PROCESSOR arm)
  set(KALLOC_CROSS "arm-none-eabi-" CACHE STRING "prefix of the cross toolchain")
  set(_kalloc_arch "-mcpu=cortex-m4 -mthumb -mfloat-abi=soft --specs=${_kalloc_prefix}/arm/kalloc.specs")
elseif(KALLOC_ARCH STREQUAL "rv32imac")
  set(CMAKE_SYSTEM_PROCESSOR riscv32)
  set(KALLOC_CROSS "riscv64-unknown-elf-" CACHE STRING "prefix of the cross toolchain")
  # The SDK's idempotent picolibc specs (kalloc.specs): named again by kalloc::sdk, harmlessly.
  set(_kalloc_arch "-march=rv32imac -mabi=ilp32 --specs=${_kalloc_prefix}/kalloc.specs")
else()
  message(FATAL_ERROR "KALLOC_ARCH=${KALLOC_ARCH}: give rv32imac (the default) or armv7m")
endif()
set(CMAKE_C_COMPILER "${KALLOC_CROSS}gcc")
set(CMAKE_ASM_COMPILER "${KALLOC_CROSS}gcc")
set(CMAKE_CXX_COMPILER "${KALLOC_CROSS}g++")

set(CMAKE_C_FLAGS_INIT "${_kalloc_arch}")
set(CMAKE_ASM_FLAGS_INIT "${_kalloc_arch}")
set(CMAKE_CXX_FLAGS_INIT "${_kalloc_arch}")
unset(_kalloc_arch)
unset(_kalloc_prefix)

# No host runtime to link a test program against: check the compiler with a static library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_EXECUTABLE_SUFFIX ".elf")
set(CMAKE_EXECUTABLE_SUFFIX_C ".elf")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
