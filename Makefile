# cnn.h - build the examples, run the tests, run the demo.
#   make            build examples and tests
#   make test       build and run every test (the last line says "N passed, N failed")
#   make demo       train LeNet-5 on EMNIST in $(EMNIST_DIR) (else Fashion-MNIST)
#   make emnist-all train LeNet-5, the MLP and the CNN on EMNIST and print a table
#   make bench      cnn.h against PyTorch: training speed, latency, memory
CC ?= cc
CXX ?= c++
CFLAGS ?= -O2
WARNINGS = -Wall -Wextra -pedantic
EMNIST_DIR ?= data
BUILD ?= build

EXAMPLES = $(patsubst examples/%.c,$(BUILD)/%,$(wildcard examples/*.c))
TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))

.PHONY: all test demo fixtures fuzz clean
all: $(EXAMPLES) $(TESTS)

$(BUILD)/%: examples/%.c cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) $< -o $@ -lm

$(BUILD)/tests/%: tests/%.c tests/test.h cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) $< -o $@ -lm

# the thread test is built with OpenMP: 1 and 2 threads must train identically
$(BUILD)/tests/test_threads: tests/test_threads.c tests/test.h cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) -fopenmp $< -o $@ -lm

# The training examples use OpenMP threads when the compiler has them (the
# results do not depend on the thread count). mlp and cnn also write PNG
# pictures through cnn.h's CNN_IMAGES section and stb_image_write (libstb-dev,
# see below).
OPENMP := $(shell echo 'int main(void) { return 0; }' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
$(BUILD)/lenet5: examples/lenet5.c cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) $(OPENMP) $< -o $@ -lm
$(BUILD)/mlp $(BUILD)/cnn: $(BUILD)/%: examples/%.c cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) $(OPENMP) $(STB_INCLUDE) $< -o $@ -lm

# Programs that read or write image files need stb_image.h and
# stb_image_write.h: Debian's libstb-dev, found through pkg-config. Without
# them these programs (and so `make` and `make test`) stop with a message
# saying what to install.
IMAGE_EXAMPLES = $(BUILD)/predict $(BUILD)/kernels $(BUILD)/folders
IMAGE_TESTS = $(BUILD)/tests/test_images $(BUILD)/tests/test_image_fuzz $(BUILD)/tests/test_pictures
HAVE_STB := $(shell pkg-config --exists stb 2>/dev/null && echo yes)
STB_INCLUDE := $(shell pkg-config --cflags stb 2>/dev/null)
NO_STB = stb_image.h and stb_image_write.h are missing: install them with 'apt-get install libstb-dev pkg-config' (Debian, Ubuntu)
ifeq ($(HAVE_STB),yes)
$(IMAGE_EXAMPLES): $(BUILD)/%: examples/%.c cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) $(STB_INCLUDE) $< -o $@ -lm
$(IMAGE_TESTS): $(BUILD)/tests/%: tests/%.c tests/test.h cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(CFLAGS) $(STB_INCLUDE) $< -o $@ -lm
else
$(IMAGE_EXAMPLES) $(IMAGE_TESTS):
	@echo "cannot build $@: $(NO_STB)"; exit 1
endif

# Compile checks: cnn.h as C99 and as C++11 under -Werror, under CNN_STATIC,
# and two translation units (one with CNN_IMPLEMENTATION) linked together.
# Each writes "ok NAME" or "FAIL NAME" for tests/run.sh to count.
STRICT = $(WARNINGS) -Werror
define compile_check
	@if $(2) >$(BUILD)/checks/$(1).log 2>&1; then echo "ok   $(1)"; \
	 else echo "FAIL $(1)"; cat $(BUILD)/checks/$(1).log; fi >>$@.tmp
endef
$(BUILD)/compile-checks.txt: cnn.h tests/compile/impl.c tests/compile/user.c tests/compile/images.c
	@mkdir -p $(BUILD)/checks
	@rm -f $@.tmp
	$(call compile_check,c99_werror,$(CC) -std=c99 $(STRICT) -DCOMPILE_CHECK_MAIN tests/compile/impl.c -o $(BUILD)/checks/c99 -lm)
	$(call compile_check,cxx11_werror,$(CXX) -std=c++11 $(STRICT) -x c++ -DCOMPILE_CHECK_MAIN tests/compile/impl.c -o $(BUILD)/checks/cxx11 -lm)
	$(call compile_check,clang_c99_werror,clang -std=c99 $(STRICT) -DCOMPILE_CHECK_MAIN tests/compile/impl.c -o $(BUILD)/checks/clang -lm)
	$(call compile_check,clang_cxx11_werror,clang++ -std=c++11 $(STRICT) -x c++ -DCOMPILE_CHECK_MAIN tests/compile/impl.c -o $(BUILD)/checks/clangxx -lm)
	$(call compile_check,openmp_werror,$(CC) -std=c99 $(STRICT) -fopenmp -DCOMPILE_CHECK_MAIN tests/compile/impl.c -o $(BUILD)/checks/openmp -lm)
	$(call compile_check,static_werror,$(CC) -std=c99 $(STRICT) -DCNN_STATIC -DCOMPILE_CHECK_MAIN tests/compile/impl.c -o $(BUILD)/checks/static -lm)
	$(call compile_check,two_units_link,$(CC) -std=c99 $(STRICT) tests/compile/impl.c tests/compile/user.c -o $(BUILD)/checks/two_units -lm && $(BUILD)/checks/two_units)
	$(call compile_check,two_units_link_cxx,$(CXX) -std=c++11 $(STRICT) -x c++ tests/compile/impl.c tests/compile/user.c -o $(BUILD)/checks/two_units_cxx -lm && $(BUILD)/checks/two_units_cxx)
	$(call compile_check,images_c99_werror,$(CC) -std=c99 $(STRICT) $(STB_INCLUDE) -c tests/compile/images.c -o $(BUILD)/checks/images_c99.o)
	$(call compile_check,images_cxx11_werror,$(CXX) -std=c++11 $(STRICT) -x c++ $(STB_INCLUDE) -c tests/compile/images.c -o $(BUILD)/checks/images_cxx11.o)
	$(call compile_check,images_clang_c99_werror,clang -std=c99 $(STRICT) $(STB_INCLUDE) -c tests/compile/images.c -o $(BUILD)/checks/images_clang.o)
	$(call compile_check,images_clang_cxx11_werror,clang++ -std=c++11 $(STRICT) -x c++ $(STB_INCLUDE) -c tests/compile/images.c -o $(BUILD)/checks/images_clangxx.o)
	$(call compile_check,images_static_werror,$(CC) -std=c99 $(STRICT) -DCNN_STATIC $(STB_INCLUDE) -c tests/compile/images.c -o $(BUILD)/checks/images_static.o)
	@mv $@.tmp $@

test: $(TESTS) $(BUILD)/compile-checks.txt
	@EMNIST_DIR="$(EMNIST_DIR)" sh tests/run.sh $(BUILD) $(TESTS)

# The demo trains on EMNIST CSV files in $(EMNIST_DIR): emnist47-{train,test}.csv
# or Kaggle's emnist-balanced-{train,test}.csv. Without them it says so and
# trains on Debian's Fashion-MNIST instead, installing it when it can.
TRAIN_CSV = $(firstword $(wildcard $(EMNIST_DIR)/emnist47-train.csv $(EMNIST_DIR)/emnist-balanced-train.csv))
TEST_CSV = $(firstword $(wildcard $(EMNIST_DIR)/emnist47-test.csv $(EMNIST_DIR)/emnist-balanced-test.csv))
FASHION = /usr/share/datasets/fashion-mnist
DEMO_ARGS ?=
demo: $(BUILD)/lenet5
ifneq ($(and $(TRAIN_CSV),$(TEST_CSV)),)
	$(BUILD)/lenet5 --train $(TRAIN_CSV) --test $(TEST_CSV) --model $(BUILD)/lenet5.cnn $(DEMO_ARGS)
else
	@echo "No EMNIST CSV files in '$(EMNIST_DIR)' (see data/README.md to get them)."
	@echo "Training on Fashion-MNIST from Debian's dataset-fashion-mnist instead."
	@test -f $(FASHION)/train-images-idx3-ubyte.gz || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get install -y dataset-fashion-mnist; \
	    else sudo apt-get install -y dataset-fashion-mnist; fi; }
	@mkdir -p $(BUILD)/fashion-mnist
	@for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
	  test -f $(BUILD)/fashion-mnist/$$f || gunzip -c $(FASHION)/$$f.gz >$(BUILD)/fashion-mnist/$$f; done
	$(BUILD)/lenet5 --train-idx $(BUILD)/fashion-mnist/train-images-idx3-ubyte $(BUILD)/fashion-mnist/train-labels-idx1-ubyte \
	  --test-idx $(BUILD)/fashion-mnist/t10k-images-idx3-ubyte $(BUILD)/fashion-mnist/t10k-labels-idx1-ubyte \
	  --model $(BUILD)/lenet5.cnn $(DEMO_ARGS)
endif

# Trains LeNet-5, the MLP and the CNN on EMNIST in $(EMNIST_DIR) (10 epochs
# each) and prints a table: model, parameters, epochs, seconds, test accuracy.
# Logs, pictures and models go to $(BUILD)/emnist-all. MODELS picks some of
# them; EMNIST_ARGS adds options to each (e.g. --epochs 1).
MODELS ?= lenet5 mlp cnn
.PHONY: emnist-all
emnist-all: $(patsubst %,$(BUILD)/%,$(MODELS))
	@sh examples/emnist-all.sh $(BUILD) $(EMNIST_DIR) $(MODELS)

# make bench: trains LeNet-5 (batch 32 and 256), the seed CNN and the seed MLP
# (batch 256) on 1 and 2 threads with cnn.h and, when Debian's python3-torch
# is installed, with PyTorch, and prints one table (README.md, "Benchmark").
# Data: EMNIST in $(EMNIST_DIR), else Fashion-MNIST. About 5 to 10 minutes;
# BENCH_SCALE=0.1 trains a tenth of the samples, for a quick, rougher look.
# PyTorch gets OpenBLAS, which Debian's torch recommends: the reference BLAS
# it otherwise falls back to is many times slower.
BENCH_CFLAGS ?= -O2
ifneq ($(TRAIN_CSV),)
BENCH_DATA = $(TRAIN_CSV)
else
BENCH_DATA = $(BUILD)/fashion-mnist/train-images-idx3-ubyte $(BUILD)/fashion-mnist/train-labels-idx1-ubyte
endif
$(BUILD)/bench/bench: tests/bench/bench.c cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) $(BENCH_CFLAGS) $(OPENMP) $< -o $@ -lm
$(BUILD)/fashion-mnist/%-ubyte:
	@test -f $(FASHION)/$*-ubyte.gz || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get install -y dataset-fashion-mnist; \
	    else sudo apt-get install -y dataset-fashion-mnist; fi; }
	@mkdir -p $(@D)
	gunzip -c $(FASHION)/$*-ubyte.gz >$@
.PHONY: bench
bench: $(BUILD)/bench/bench $(BENCH_DATA)
	@if /usr/bin/python3 -c 'import torch' 2>/dev/null && ! ls /usr/lib/*/openblas-*/libblas.so.3 >/dev/null 2>&1; then \
	  echo "Installing libopenblas0-pthread for PyTorch (see the Makefile)"; \
	  { if [ "$$(id -u)" = 0 ]; then apt-get install -y libopenblas0-pthread; \
	    else sudo apt-get install -y libopenblas0-pthread; fi; } || echo "(not installed: PyTorch runs on the reference BLAS)"; fi
	@sh tests/bench/run.sh $(BUILD)/bench $(BENCH_DATA)

# Regenerates the PyTorch reference values that tests/test_reference.c checks
# (needs Debian's python3-torch; the tests themselves do not).
fixtures:
	/usr/bin/python3 tests/reference/gen.py

# make sanitize: every test built with AddressSanitizer (with LeakSanitizer)
# and UndefinedBehaviorSanitizer into $(SANITIZE_BUILD), and run through
# tests/run.sh: the first report of either stops that program, which counts
# as a failure. test_threads keeps -fopenmp. SANITIZE_CC=gcc works too.
# allocator_may_return_null: a request too large for any machine gets NULL,
# as from malloc, so the tests can check that cnn.h says "out of memory".
SANITIZE_CC ?= clang
SANITIZE_BUILD = $(BUILD)/sanitize
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -g -O1
SANITIZE_TESTS = $(patsubst tests/%.c,$(SANITIZE_BUILD)/tests/%,$(wildcard tests/test_*.c))
# third-party code left uninstrumented by UBSan, with the reason (clang only)
SANITIZE_IGNORE = $(if $(findstring clang,$(SANITIZE_CC)),-fsanitize-ignorelist=tests/sanitize-ignore.txt)
$(SANITIZE_TESTS): tests/sanitize-ignore.txt
$(SANITIZE_BUILD)/tests/%: tests/%.c tests/test.h cnn.h
	@mkdir -p $(@D)
	$(SANITIZE_CC) -std=c99 $(WARNINGS) $(SANITIZE_FLAGS) $(SANITIZE_IGNORE) $(if $(filter test_threads,$*),-fopenmp) $(STB_INCLUDE) $< -o $@ -lm
.PHONY: sanitize valgrind
sanitize: $(SANITIZE_TESTS)
	@ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 EMNIST_DIR="$(EMNIST_DIR)" \
	  sh tests/run.sh $(SANITIZE_BUILD) $(SANITIZE_TESTS)

# make valgrind: one short training under valgrind's memcheck - LeNet-5, one
# epoch on $(EMNIST_DIR)/slice2k.csv (2,000 EMNIST rows) when it is there,
# else the allocation-failure test, which trains a LeNet-5 too. Built
# without OpenMP, whose thread pool valgrind would report, not ours. Any
# error or leak makes valgrind exit with 1.
VALGRIND = valgrind --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=1
VALGRIND_CSV = $(wildcard $(EMNIST_DIR)/slice2k.csv)
$(BUILD)/valgrind/%: examples/%.c cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) -O2 -g $< -o $@ -lm
$(BUILD)/valgrind/tests/%: tests/%.c tests/test.h cnn.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(WARNINGS) -O2 -g $< -o $@ -lm
ifneq ($(VALGRIND_CSV),)
valgrind: $(BUILD)/valgrind/lenet5
	$(VALGRIND) $(BUILD)/valgrind/lenet5 --train $(VALGRIND_CSV) --test $(VALGRIND_CSV) --epochs 1 --batch 64 \
	  --classes 47 --model $(BUILD)/valgrind/lenet5.cnn
else
valgrind: $(BUILD)/valgrind/tests/test_alloc_failure
	@echo "no $(EMNIST_DIR)/slice2k.csv: running the allocation-failure test under valgrind instead"
	TEST_TMP=$(BUILD)/valgrind $(VALGRIND) $(BUILD)/valgrind/tests/test_alloc_failure
endif

# Fuzzing (clang's libFuzzer; the image target needs Debian's libstb-dev):
#   make fuzz FUZZ_SECONDS=60    runs each target for that long, one after another
# Seeds are written by tests/fuzz/seeds.c into $(BUILD)/fuzz/seeds/TARGET;
# what the fuzzer finds goes to $(BUILD)/fuzz/corpus/TARGET, and an input that
# crashes to $(BUILD)/fuzz/crash-TARGET-*. Any crash fails the make.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = csv idx mapping model image
FUZZ_FLAGS = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h cnn.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(STB_INCLUDE) $< -o $@ -lm
$(BUILD)/fuzz/fuzz_image: tests/fuzz/fuzz_image.c tests/fuzz/fuzz.h tests/fuzz/stb-ignore.txt cnn.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -fsanitize-ignorelist=tests/fuzz/stb-ignore.txt $(STB_INCLUDE) $< -o $@ -lm
$(BUILD)/fuzz/seeds/done: tests/fuzz/seeds.c cnn.h
	@mkdir -p $(BUILD)/fuzz
	$(CC) -std=c99 $(WARNINGS) -O1 $(STB_INCLUDE) tests/fuzz/seeds.c -o $(BUILD)/fuzz/seeds-writer -lm
	rm -rf $(BUILD)/fuzz/seeds && $(BUILD)/fuzz/seeds-writer $(BUILD)/fuzz/seeds data/emnist-balanced-mapping.txt
	@touch $@
fuzz: $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS)) $(BUILD)/fuzz/seeds/done
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; mkdir -p $(BUILD)/fuzz/corpus/$$t; \
	  $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/crash-$$t- $(BUILD)/fuzz/corpus/$$t $(BUILD)/fuzz/seeds/$$t \
	    2>$(BUILD)/fuzz/fuzz_$$t.log || { tail -n 40 $(BUILD)/fuzz/fuzz_$$t.log; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done' $(BUILD)/fuzz/fuzz_$$t.log; \
	done

clean:
	rm -rf $(BUILD)
