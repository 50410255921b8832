# Sanitizer and fuzzing builds (docs/reliability.md "Sanitizers", "Fuzzing"; tests/run-hardening.sh).
#
#   -DQRAG_SANITIZE=address,undefined   AddressSanitizer (+ LeakSanitizer) and UndefinedBehaviorSanitizer
#   -DQRAG_SANITIZE=thread              ThreadSanitizer (cannot be combined with address)
#   -DQRAG_FUZZ=ON                      clang only: every object gets libFuzzer's coverage instrumentation
#                                       (-fsanitize=fuzzer-no-link) and tests/fuzz/ builds one fuzz_<parser>
#                                       program per parser of untrusted input; usually with address,undefined.
#
# The flags apply to everything the project compiles (not to Debian's prebuilt libraries). UBSan does not
# recover: the first finding aborts the process, so a test that triggers one fails. Both builds turn the
# CUDA backend off (AUTO → OFF): nvcc's host pass does not take these flags, and the kernels cannot run here.
set(QRAG_SANITIZE "" CACHE STRING "Sanitizers for the whole build: address,undefined | thread | empty")
option(QRAG_FUZZ "Build the libFuzzer targets of tests/fuzz/ (clang)" OFF)

if(QRAG_SANITIZE STREQUAL "" AND NOT QRAG_FUZZ)
  return()
endif()

string(REPLACE "," ";" _qrag_sanitizers "${QRAG_SANITIZE}")
foreach(s IN LISTS _qrag_sanitizers)
  if(NOT s MATCHES "^(address|undefined|thread)$")
    message(FATAL_ERROR "QRAG_SANITIZE: unknown sanitizer '${s}' (use address,undefined or thread)")
  endif()
endforeach()
if("thread" IN_LIST _qrag_sanitizers AND "address" IN_LIST _qrag_sanitizers)
  message(FATAL_ERROR "QRAG_SANITIZE: thread cannot be combined with address")
endif()
if(QRAG_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "QRAG_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++ "
                      "(Debian: clang libclang-rt-14-dev)")
endif()
if(QRAG_FUZZ AND "thread" IN_LIST _qrag_sanitizers)
  message(FATAL_ERROR "QRAG_FUZZ=ON goes with address,undefined (or no sanitizer), not thread")
endif()
if(QRAG_ENABLE_CUDA STREQUAL "ON")
  message(FATAL_ERROR "QRAG_SANITIZE / QRAG_FUZZ builds are CPU-only: leave QRAG_ENABLE_CUDA at AUTO or OFF")
endif()
set(QRAG_ENABLE_CUDA "OFF" CACHE STRING "" FORCE)

set(_qrag_flags -fno-omit-frame-pointer)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  # Line tables are enough for symbolized reports and compile much faster than full debug info.
  list(APPEND _qrag_flags -gline-tables-only)
else()
  list(APPEND _qrag_flags -g1)
endif()
if(_qrag_sanitizers)
  list(JOIN _qrag_sanitizers "," _qrag_joined)
  list(APPEND _qrag_flags -fsanitize=${_qrag_joined})
  if("undefined" IN_LIST _qrag_sanitizers)
    list(APPEND _qrag_flags -fno-sanitize-recover=undefined)
  endif()
endif()
if(QRAG_FUZZ)
  list(APPEND _qrag_flags -fsanitize=fuzzer-no-link)
endif()
add_compile_options("$<$<COMPILE_LANGUAGE:CXX,C>:${_qrag_flags}>")
if(_qrag_sanitizers)
  add_link_options(-fsanitize=${_qrag_joined})
endif()
if("thread" IN_LIST _qrag_sanitizers)
  # Debian's Abseil is not TSan-instrumented: tests/sanitizers/absl_tsan_interpose.cc tells TSan about absl::Mutex
  # and absl::CondVar. It is compiled here, at configure time, and linked into every executable (exported with
  # -rdynamic, so that its definitions win over libabsl_synchronization.so's for the library's callers too).
  set(_qrag_interpose_src ${PROJECT_SOURCE_DIR}/tests/sanitizers/absl_tsan_interpose.cc)
  set(_qrag_interpose_obj ${PROJECT_BINARY_DIR}/absl_tsan_interpose.o)
  execute_process(
    COMMAND ${CMAKE_CXX_COMPILER} -std=c++20 -O1 -fPIC -fsanitize=thread -c ${_qrag_interpose_src}
      -o ${_qrag_interpose_obj}
    RESULT_VARIABLE _qrag_rc ERROR_VARIABLE _qrag_err)
  if(NOT _qrag_rc EQUAL 0)
    message(FATAL_ERROR "compiling ${_qrag_interpose_src} failed:\n${_qrag_err}")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_qrag_interpose_src})
  add_link_options("$<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:${_qrag_interpose_obj};-rdynamic;-ldl>")
endif()
# A sanitized binary's static TLS and stacks are larger; the metrics exposer's and thread pool's small stacks
# are sized for an optimized build (tests that depend on stack size read this definition).
add_compile_definitions(QRAG_SANITIZED_BUILD=1)
set(QRAG_SANITIZED_BUILD ON)
message(STATUS "qrag: sanitizers '${QRAG_SANITIZE}', fuzz targets ${QRAG_FUZZ}")
