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

set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)

set(KALLOC_CROSS "riscv64-unknown-elf-" CACHE STRING "prefix of the RISC-V cross toolchain")
set(CMAKE_C_COMPILER "${KALLOC_CROSS}gcc")
set(CMAKE_ASM_COMPILER "${KALLOC_CROSS}gcc")
set(CMAKE_CXX_COMPILER "${KALLOC_CROSS}g++")

get_filename_component(_kalloc_prefix "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
# The SDK's idempotent picolibc specs (kalloc.specs): named again by kalloc::sdk, harmlessly.
set(_kalloc_arch "-march=rv32imac -mabi=ilp32 --specs=${_kalloc_prefix}/kalloc.specs")
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
