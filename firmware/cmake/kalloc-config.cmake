# kalloc-config.cmake — the kalloc firmware SDK as a CMake package.
#
#   find_package(kalloc CONFIG REQUIRED)   # CMAKE_PREFIX_PATH="$(kalloc sdk --prefix)"
#   add_executable(app main.c)
#   target_link_libraries(app PRIVATE mylib kalloc::sdk)        # or kalloc::sdk_kasan
#   enable_testing()
#   kalloc_add_test(NAME app_runs ELF app)                      # ctest runs `kalloc run`
#
# kalloc::sdk        compile flags (frame pointers, no sibling calls, -g), kalloc.h,
#                    link flags (-nostartfiles, the linker script) and
#                    libkalloc_sdk.a linked whole, so its malloc wins over picolibc's
# kalloc::sdk_kasan  the same with compiled KASAN: the code of the target that links
#                    it is instrumented (the SDK is not), libkalloc_sdk_kasan.a
# The same values as `kalloc sdk --cflags/--ldflags/--libs [--kasan]` and kalloc.pc.
# Use with the toolchain file next to this one (cmake/kalloc-toolchain.cmake).
# KALLOC_ARCH (the toolchain file's; default rv32imac) picks the machine: armv7m hands
# out the Cortex-M SDK (`kalloc sdk --arch armv7m`, kalloc-armv7m.pc) and makes
# kalloc_add_test run on the stm32f4 board unless it names another.

get_filename_component(KALLOC_PREFIX "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(KALLOC_INCLUDE_DIR "${KALLOC_PREFIX}/include")
if(NOT KALLOC_ARCH)
  set(KALLOC_ARCH rv32imac)
endif()
if(KALLOC_ARCH STREQUAL "armv7m")
  set(KALLOC_LINKER_SCRIPT "${KALLOC_PREFIX}/arm/link.ld")
  set(_kalloc_libdir "${KALLOC_PREFIX}/build/armv7m")
  set(_kalloc_arch -mcpu=cortex-m4 -mthumb -mfloat-abi=soft "--specs=${KALLOC_PREFIX}/arm/kalloc.specs")
  set(_KALLOC_BOARD stm32f4)
else()
  set(KALLOC_LINKER_SCRIPT "${KALLOC_PREFIX}/link.ld")
  set(_kalloc_libdir "${KALLOC_PREFIX}/build")
  set(_kalloc_arch -march=rv32imac -mabi=ilp32 "--specs=${KALLOC_PREFIX}/kalloc.specs")
  set(_KALLOC_BOARD "")
endif()
set(kalloc_VERSION 0.1.0)

find_program(KALLOC_EXECUTABLE kalloc DOC "the kalloc command (kalloc run), for kalloc_add_test")

set(_kalloc_cflags ${_kalloc_arch} -fno-omit-frame-pointer -fno-optimize-sibling-calls -g
    -ffunction-sections -fdata-sections
    # reports name your files relative to the project's top directory
    "-ffile-prefix-map=${CMAKE_SOURCE_DIR}/=" "-ffile-prefix-map=${CMAKE_SOURCE_DIR}=.")
set(_kalloc_kasan_flags -fsanitize=kernel-address --param=asan-instrumentation-with-call-threshold=0
    --param=asan-stack=0 --param=asan-globals=0)
set(_kalloc_ldflags ${_kalloc_arch} -nostartfiles "SHELL:-T ${KALLOC_LINKER_SCRIPT}" -Wl,--gc-sections
    -Wl,--build-id=none)

foreach(_kalloc_variant sdk sdk_kasan)
  if(NOT TARGET kalloc::${_kalloc_variant})
    add_library(kalloc::${_kalloc_variant} INTERFACE IMPORTED)
    if(_kalloc_variant STREQUAL "sdk")
      set(_kalloc_opts ${_kalloc_cflags})
      set(_kalloc_lib "${_kalloc_libdir}/libkalloc_sdk.a")
    else()
      set(_kalloc_opts ${_kalloc_cflags} ${_kalloc_kasan_flags})
      set(_kalloc_lib "${_kalloc_libdir}/libkalloc_sdk_kasan.a")
    endif()
    set_target_properties(kalloc::${_kalloc_variant} PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${KALLOC_INCLUDE_DIR}"
      INTERFACE_COMPILE_OPTIONS "${_kalloc_opts}"
      INTERFACE_LINK_OPTIONS "${_kalloc_ldflags}"
      # linked whole, after the target's own objects and libraries
      INTERFACE_LINK_LIBRARIES "-Wl,--whole-archive;${_kalloc_lib};-Wl,--no-whole-archive"
      INTERFACE_LINK_DEPENDS "${KALLOC_LINKER_SCRIPT};${_kalloc_lib}")
  endif()
endforeach()
unset(_kalloc_variant)
unset(_kalloc_opts)
unset(_kalloc_lib)

# kalloc_add_test(NAME name ELF target-or-path [EXPECT status] [SANITIZE mode] [BOARD board]
#                 [ARGS more kalloc run options...])
# A CTest test running `kalloc run --quiet` on the ELF. It passes when kalloc's exit status
# is EXPECT (default 0: the firmware returned 0 and kalloc found no error); kalloc's
# statuses (docs/user-guide.md, "Exit status"): 1-63 the firmware's own exit code,
# 64 kalloc found an error, 65 the firmware faulted, ...
function(kalloc_add_test)
  cmake_parse_arguments(KT "" "NAME;ELF;EXPECT;SANITIZE;BOARD" "ARGS" ${ARGN})
  if(NOT KT_NAME OR NOT KT_ELF)
    message(FATAL_ERROR "kalloc_add_test: NAME and ELF are required")
  endif()
  if(NOT KALLOC_EXECUTABLE)
    message(FATAL_ERROR "kalloc_add_test: the kalloc command was not found (set KALLOC_EXECUTABLE)")
  endif()
  if(TARGET ${KT_ELF})
    set(_elf "$<TARGET_FILE:${KT_ELF}>")
  else()
    set(_elf "${KT_ELF}")
  endif()
  set(_cmd "${KALLOC_EXECUTABLE}" run --quiet)
  if(KT_SANITIZE)
    list(APPEND _cmd --sanitize ${KT_SANITIZE})
  endif()
  if(NOT KT_BOARD)
    set(KT_BOARD "${_KALLOC_BOARD}")  # the arch's board (armv7m: stm32f4), else kalloc's default
  endif()
  if(KT_BOARD)
    list(APPEND _cmd --board ${KT_BOARD})
  endif()
  list(APPEND _cmd ${KT_ARGS} "${_elf}")
  if(NOT DEFINED KT_EXPECT)
    set(KT_EXPECT 0)
  endif()
  add_test(NAME ${KT_NAME}
           COMMAND "${CMAKE_COMMAND}" -DKALLOC_EXPECT=${KT_EXPECT}
                   -P "${_KALLOC_RUN_TEST}" ${_cmd})
endfunction()
set(_KALLOC_RUN_TEST "${CMAKE_CURRENT_LIST_DIR}/kalloc-run-test.cmake")
