# Fuzzing. Each tests/fuzz/<target>.c defines nn_fuzz_<target>(). With
# NN_FUZZ=ON (needs clang; see tests/fuzz/run.sh) every target also becomes a
# libFuzzer binary fuzz_<target>, with ASan and UBSan. In every build the
# Criterion test fuzz_regress_test links the same entry functions and replays
# the saved corpus, so CI runs the regression inputs, not the fuzzer.
set(NN_FUZZ_TARGETS check safetensors idx csv)
set(NN_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

if(TARGET fuzz_regress_test)
  foreach(t ${NN_FUZZ_TARGETS})
    target_sources(fuzz_regress_test PRIVATE ${NN_FUZZ_DIR}/${t}.c)
  endforeach()
  target_sources(fuzz_regress_test PRIVATE ${NN_FUZZ_DIR}/fuzz_file.c)
  target_include_directories(fuzz_regress_test PRIVATE ${NN_FUZZ_DIR})
endif()

if(NN_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "NN_FUZZ=ON needs clang: cmake -DCMAKE_C_COMPILER=clang-14 -DNN_FUZZ=ON")
  endif()
  foreach(t ${NN_FUZZ_TARGETS})
    add_executable(fuzz_${t} ${NN_FUZZ_DIR}/${t}.c ${NN_FUZZ_DIR}/fuzz_file.c)
    target_compile_definitions(fuzz_${t} PRIVATE NN_FUZZ_ENTRY=1)
    target_include_directories(fuzz_${t} PRIVATE ${NN_FUZZ_DIR})
    target_link_libraries(fuzz_${t} PRIVATE nncomp)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  endforeach()
endif()
