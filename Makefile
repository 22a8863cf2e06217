# cnn.h - build the examples, run the tests, run the demo.
#   make            build examples and tests
#   make test       build and run every test (the last line says "N passed, N failed")
#   make demo       train LeNet-5 on EMNIST in $(EMNIST_DIR) (else Fashion-MNIST)
CC ?= cc
CXX ?= c++
CFLAGS ?= -O2
WARNINGS = -Wall -Wextra -pedantic
EMNIST_DIR ?= data
BUILD ?= build

EXAMPLES = $(patsubst examples/%.c,$(BUILD)/%,$(wildcard examples/*.c))
TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))

.PHONY: all test demo fixtures clean
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

# Compile checks: cnn.h as C99 and as C++11 under -Werror, under CNN_STATIC,
# and two translation units (one with CNN_IMPLEMENTATION) linked together.
# Each writes "ok NAME" or "FAIL NAME" for tests/run.sh to count.
STRICT = $(WARNINGS) -Werror
define compile_check
	@if $(2) >$(BUILD)/checks/$(1).log 2>&1; then echo "ok   $(1)"; \
	 else echo "FAIL $(1)"; cat $(BUILD)/checks/$(1).log; fi >>$@.tmp
endef
$(BUILD)/compile-checks.txt: cnn.h tests/compile/impl.c tests/compile/user.c
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

# Regenerates the PyTorch reference values that tests/test_reference.c checks
# (needs Debian's python3-torch; the tests themselves do not).
fixtures:
	/usr/bin/python3 tests/reference/gen.py

clean:
	rm -rf $(BUILD)
