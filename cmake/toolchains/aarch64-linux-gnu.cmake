# Cross build for AArch64 Linux with Debian's g++-aarch64-linux-gnu; tests run under qemu-aarch64
# (package qemu-user) through CMAKE_CROSSCOMPILING_EMULATOR, so ctest and gtest_discover_tests
# work unchanged. Used by the `aarch64-neon` preset:
#   cmake --workflow --preset aarch64-neon
# GoogleTest is then built from /usr/src/googletest (the host libgtest is x86-64 and cannot link
# into an AArch64 binary; see tests/CMakeLists.txt).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(LOGQUANT_CROSS_TRIPLE aarch64-linux-gnu)
set(LOGQUANT_CROSS_SYSROOT /usr/${LOGQUANT_CROSS_TRIPLE})
set(CMAKE_C_COMPILER ${LOGQUANT_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${LOGQUANT_CROSS_TRIPLE}-g++)

# -L: where qemu finds the AArch64 dynamic loader and libstdc++. qemu's default CPU ("max")
# has every extension it emulates, dotprod included, so the NEON kernels take their SDOT path.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${LOGQUANT_CROSS_SYSROOT})

# Libraries and packages come from the AArch64 sysroot only, never from the host; programs
# (the host's tools) from the host.
set(CMAKE_FIND_ROOT_PATH ${LOGQUANT_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# The one exception: Eigen (tests and examples only) is header-only and the same on every
# architecture, so the host's Debian package serves the cross build too.
if(NOT DEFINED Eigen3_DIR AND EXISTS /usr/share/eigen3/cmake/Eigen3Config.cmake)
  set(Eigen3_DIR /usr/share/eigen3/cmake CACHE PATH "Eigen3Config.cmake of the host (header-only)")
endif()

# A second emulator for tests: an ARMv8.0 CPU model without dotprod, so the NEON kernels' ARMv8.0
# baseline and their run-time dotprod check run too (tests/CMakeLists.txt).
set(LOGQUANT_TEST_EMULATOR_ARMV8_0 qemu-aarch64 -cpu cortex-a53 -L ${LOGQUANT_CROSS_SYSROOT})
