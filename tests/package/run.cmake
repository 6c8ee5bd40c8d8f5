# Drives one package test (cmake -P): proves logquant can be consumed by a user's project.
#   MODE=find_package      configure logquant alone (tests off), install it into a scratch
#                          prefix, then build the consumer with find_package(logquant CONFIG)
#   MODE=add_subdirectory  build the consumer with add_subdirectory(<source tree>)
#   MODE=plain_include     compile the consumer with the bare compiler and -I <source>/include
# In every mode the consumer is run and must exit 0. Required: MODE, SOURCE_DIR, WORK_DIR,
# CXX_COMPILER, GENERATOR. Optional: CXX_FLAGS, LINKER_FLAGS, BUILD_TYPE, TOOLCHAIN_FILE,
# EMULATOR (|-separated, for cross builds run under qemu).
cmake_minimum_required(VERSION 3.21)

foreach(var MODE SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake: -D${var}=... is required")
  endif()
endforeach()
string(REPLACE "|" ";" EMULATOR "${EMULATOR}")
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# Runs a command, echoing it, and stops the test with its output when it fails.
function(run_step)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "run: ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${shown}")
  endif()
endfunction()

# Settings every nested configure shares, so the consumer is built like the enclosing build
# (same compiler, sanitizer flags, cross toolchain).
set(common_args -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")
if(TOOLCHAIN_FILE)
  list(APPEND common_args "-DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN_FILE}")
endif()

set(consumer_source "${SOURCE_DIR}/tests/package")
set(exe "${WORK_DIR}/consumer/consumer")

if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  run_step(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/logquant" ${common_args}
           -DLOGQUANT_BUILD_TESTS=OFF -DLOGQUANT_BUILD_BENCHMARKS=OFF
           -DLOGQUANT_BUILD_EXAMPLES=OFF "-DCMAKE_INSTALL_PREFIX=${prefix}")
  run_step(${CMAKE_COMMAND} --build "${WORK_DIR}/logquant")
  run_step(${CMAKE_COMMAND} --install "${WORK_DIR}/logquant")
  foreach(installed include/logquant/logquant.hpp include/logquant/kv_cache.hpp)
    if(NOT EXISTS "${prefix}/${installed}")
      message(FATAL_ERROR "the install is missing ${installed}")
    endif()
  endforeach()
  # The package must find its own files relative to itself: move the prefix before using it,
  # as a packager (DESTDIR, a .deb) would.
  file(RENAME "${prefix}" "${WORK_DIR}/moved-prefix")
  set(prefix "${WORK_DIR}/moved-prefix")
  # A cross toolchain confines package searches to its sysroot (CMAKE_FIND_ROOT_PATH_MODE_PACKAGE
  # ONLY), so there point at the package directory the way a cross user would.
  set(cross_args "")
  if(TOOLCHAIN_FILE)
    set(cross_args "-Dlogquant_DIR=${prefix}/share/cmake/logquant")
  endif()
  run_step(${CMAKE_COMMAND} -S "${consumer_source}" -B "${WORK_DIR}/consumer" ${common_args}
           ${cross_args} -DLOGQUANT_CONSUMER_MODE=find_package "-DCMAKE_PREFIX_PATH=${prefix}"
           "-DLOGQUANT_EXPECTED_PREFIX=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  run_step(${CMAKE_COMMAND} --build "${WORK_DIR}/consumer")
elseif(MODE STREQUAL "add_subdirectory")
  run_step(${CMAKE_COMMAND} -S "${consumer_source}" -B "${WORK_DIR}/consumer" ${common_args}
           -DLOGQUANT_CONSUMER_MODE=add_subdirectory "-DLOGQUANT_SOURCE_DIR=${SOURCE_DIR}")
  run_step(${CMAKE_COMMAND} --build "${WORK_DIR}/consumer")
elseif(MODE STREQUAL "plain_include")
  # What a user without CMake types: the compiler, -std=c++17 and one include path.
  separate_arguments(flags UNIX_COMMAND "${CXX_FLAGS} ${LINKER_FLAGS}")
  file(MAKE_DIRECTORY "${WORK_DIR}/consumer")
  run_step("${CXX_COMPILER}" -std=c++17 -O2 -Wall -Wextra -Wpedantic -Werror ${flags}
           -I "${SOURCE_DIR}/include" "${consumer_source}/main.cpp" -o "${exe}")
else()
  message(FATAL_ERROR "run.cmake: unknown MODE '${MODE}'")
endif()

run_step(${EMULATOR} "${exe}")
