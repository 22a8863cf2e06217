# cnn.h - build the examples, run the tests, run the demo.
#   make             build the examples and tests (without stb: those it can)
#   make test        build and run every test (the last line says "N passed, N failed")
#   make test-plain  the same tests built with -DCNN_NO_FAST: the plain library alone
#   make sanitize    the same tests under AddressSanitizer, LeakSanitizer and UBSan
#   make demo        train LeNet-5 on EMNIST in $(EMNIST_DIR) (else Fashion-MNIST)
#   make emnist-all  train LeNet-5, the MLP and the CNN on EMNIST and print a table
#                    (MODELS="cnn-bn resnet": the CNN with batch norm, the small ResNet)
#   make bench       cnn.h against PyTorch: training speed, latency, memory
#   make deps        install the Debian packages that building and testing need
#   make install     cnn.h and cnn.pc (pkg-config) under PREFIX (/usr/local), DESTDIR; make uninstall
#   make interop     cnn.h and PyTorch (python3-torch) exchange three models both ways
#   make mcu         the model exported in float32 and int8, run on an emulated Cortex-M4
#   make web         the model in a web page: cnn.h compiled to WebAssembly (build/web)
#   make test-web    that page driven in a headless chromium (tests/web/README.md)
#   make valgrind, fuzz, fixtures, clean: see below
CC ?= cc
CXX ?= c++
CFLAGS ?= -O2
EMNIST_DIR ?= data
BUILD ?= build
C99 = -std=c99 -Wall -Wextra -pedantic
# examples use OpenMP threads when the compiler has them (results do not depend
# on the count); of the tests, test_threads only: 1 and 2 threads must agree
OPENMP := $(shell echo 'int main(void) { return 0; }' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
TEST_OPENMP = $(if $(filter test_threads.c,$(notdir $<)),-fopenmp)

# Programs that read or write images need stb_image.h and stb_image_write.h (libstb-dev).
# Without them `make` builds the rest; building one of them (`make test`) stops.
STB_DIR ?= /usr/include/stb
HAVE_STB = $(and $(wildcard $(STB_DIR)/stb_image.h),$(wildcard $(STB_DIR)/stb_image_write.h))
NO_STB = no stb_image.h and stb_image_write.h in $(STB_DIR): install libstb-dev ('make deps' on Debian, Ubuntu) or set STB_DIR
IMAGE_PROGRAMS = $(addprefix %/,mlp cnn resnet predict kernels folders test_images test_image_fuzz test_pictures)

EXAMPLES = $(patsubst examples/%.c,$(BUILD)/%,$(wildcard examples/*.c))
TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
PLAIN_TESTS = $(patsubst $(BUILD)/%,$(BUILD)/plain/%,$(TESTS))
SANITIZE_TESTS = $(patsubst $(BUILD)/%,$(BUILD)/sanitize/%,$(TESTS))
EXAMPLE_DEPS = cnn.h $(wildcard examples/*.h)
TEST_DEPS = $(EXAMPLE_DEPS) tests/test.h

.PHONY: all test test-plain sanitize demo emnist-all bench deps interop valgrind fuzz fixtures clean stb fashion-package
all: $(if $(HAVE_STB),$(EXAMPLES) $(TESTS),$(filter-out $(IMAGE_PROGRAMS),$(EXAMPLES) $(TESTS)))
	$(if $(HAVE_STB),,@echo "left out $(filter $(IMAGE_PROGRAMS),$(EXAMPLES) $(TESTS))"; echo "$(NO_STB)")
$(filter $(IMAGE_PROGRAMS),$(EXAMPLES) $(TESTS) $(PLAIN_TESTS) $(SANITIZE_TESTS)) $(BUILD)/compile-checks.txt \
  $(BUILD)/fuzz/fuzz_image $(BUILD)/fuzz/seeds/done: | stb
stb:
	@$(if $(HAVE_STB),true,echo "$(NO_STB)"; exit 1)

# One pattern rule a kind of program: examples; tests; plain tests (no fast path, no
# OpenMP); sanitized tests (tests/sanitize-ignore.txt: stb, left alone by clang's UBSan).
$(BUILD)/%: examples/%.c $(EXAMPLE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(C99) $(CFLAGS) $(OPENMP) -I$(STB_DIR) $< -o $@ -lm
$(BUILD)/tests/%: tests/%.c $(TEST_DEPS)
	@mkdir -p $(@D)
	$(CC) $(C99) $(CFLAGS) $(TEST_OPENMP) -I$(STB_DIR) $< -o $@ -lm
$(BUILD)/plain/tests/%: tests/%.c $(TEST_DEPS)
	@mkdir -p $(@D)
	$(CC) $(C99) $(CFLAGS) -DCNN_NO_FAST -I$(STB_DIR) $< -o $@ -lm
SANITIZE_CC ?= clang
$(BUILD)/sanitize/tests/%: tests/%.c $(TEST_DEPS) tests/sanitize-ignore.txt
	@mkdir -p $(@D)
	$(SANITIZE_CC) $(C99) -fsanitize=address,undefined -fno-sanitize-recover=all -g -O1 $(TEST_OPENMP) -I$(STB_DIR) \
	  $(if $(findstring clang,$(SANITIZE_CC)),-fsanitize-ignorelist=tests/sanitize-ignore.txt) $< -o $@ -lm
# C99, C++11, gcc, clang, -Werror, CNN_STATIC, CNN_NO_FAST, MinGW (the library and every example)...:
# tests/compile/run.sh
$(BUILD)/compile-checks.txt: cnn.h $(wildcard tests/compile/*) $(wildcard examples/*.c examples/*.h)
	@mkdir -p $(@D)
	@CC="$(CC)" CXX="$(CXX)" STB_DIR="$(STB_DIR)" sh tests/compile/run.sh $(BUILD)/checks >$@.tmp && mv $@.tmp $@

# tests/scripts/test_*.sh: what C cannot check well (the README's program built as a user
# builds it, make install and pkg-config, examples run as commands, the scripts' text)
SCRIPT_TESTS = $(wildcard tests/scripts/test_*.sh)
test: $(TESTS) $(BUILD)/compile-checks.txt $(addprefix $(BUILD)/,kernels lenet5 mlp cnn resnet folders predict)
	@EMNIST_DIR="$(EMNIST_DIR)" BUILD="$(BUILD)" CC="$(CC)" STB_DIR="$(STB_DIR)" \
	  sh tests/run.sh $(BUILD) $(TESTS) $(SCRIPT_TESTS)
test-plain: $(PLAIN_TESTS)
	@EMNIST_DIR="$(EMNIST_DIR)" sh tests/run.sh $(BUILD)/plain $(PLAIN_TESTS)
# allocator_may_return_null: an impossible request gets NULL, so cnn.h can say "out of memory"
sanitize: $(SANITIZE_TESTS)
	@ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 EMNIST_DIR="$(EMNIST_DIR)" \
	  sh tests/run.sh $(BUILD)/sanitize $(SANITIZE_TESTS)
deps:
	sh tests/deps.sh build test

# make install [PREFIX=/usr/local] [DESTDIR=]: cnn.h into $(INCLUDEDIR) and cnn.pc, for
# pkg-config (its version: cnn.h's CNN_VERSION_MAJOR.MINOR.PATCH), into $(PKGCONFIGDIR),
# so that `cc $$(pkg-config --cflags --libs cnn) app.c` builds; both under DESTDIR when
# it is set. make uninstall removes those two files.
PREFIX ?= /usr/local
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(PREFIX)/lib/pkgconfig
CNN_VERSION = $(shell awk '/^.define CNN_VERSION_(MAJOR|MINOR|PATCH) / { v[$$2] = $$3 } \
  END { print v["CNN_VERSION_MAJOR"] "." v["CNN_VERSION_MINOR"] "." v["CNN_VERSION_PATCH"] }' cnn.h)
.PHONY: install uninstall
install:
	@case "$(CNN_VERSION)" in [0-9]*.[0-9]*.[0-9]*) ;; *) echo "no CNN_VERSION_MAJOR, _MINOR and _PATCH in cnn.h"; exit 1 ;; esac
	mkdir -p "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	cp cnn.h "$(DESTDIR)$(INCLUDEDIR)/cnn.h.tmp" && mv "$(DESTDIR)$(INCLUDEDIR)/cnn.h.tmp" "$(DESTDIR)$(INCLUDEDIR)/cnn.h"
	printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))' '' 'Name: cnn' \
	  'Description: convolutional neural networks in one C99 header' 'Version: $(CNN_VERSION)' \
	  'Cflags: -I$${includedir}' 'Libs: -lm' >"$(DESTDIR)$(PKGCONFIGDIR)/cnn.pc.tmp"
	mv "$(DESTDIR)$(PKGCONFIGDIR)/cnn.pc.tmp" "$(DESTDIR)$(PKGCONFIGDIR)/cnn.pc"
uninstall:
	rm -f "$(DESTDIR)$(INCLUDEDIR)/cnn.h" "$(DESTDIR)$(PKGCONFIGDIR)/cnn.pc"

# The demo trains on emnist47-{train,test}.csv or Kaggle's emnist-balanced-{train,test}.csv
# in $(EMNIST_DIR); without them, on Debian's Fashion-MNIST (installed when needed).
TRAIN_CSV = $(firstword $(wildcard $(EMNIST_DIR)/emnist47-train.csv $(EMNIST_DIR)/emnist-balanced-train.csv))
TEST_CSV = $(firstword $(wildcard $(EMNIST_DIR)/emnist47-test.csv $(EMNIST_DIR)/emnist-balanced-test.csv))
FASHION_TRAIN = $(BUILD)/fashion-mnist/train-images-idx3-ubyte $(BUILD)/fashion-mnist/train-labels-idx1-ubyte
FASHION_TEST = $(BUILD)/fashion-mnist/t10k-images-idx3-ubyte $(BUILD)/fashion-mnist/t10k-labels-idx1-ubyte
EMNIST = $(and $(TRAIN_CSV),$(TEST_CSV))
FASHION_NAMES = T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot
DEMO_DATA = $(if $(EMNIST),--train $(TRAIN_CSV) --test $(TEST_CSV),--train-idx $(FASHION_TRAIN) --test-idx $(FASHION_TEST))
DEMO_ARGS ?=
demo: $(BUILD)/lenet5 $(filter-out --%,$(DEMO_DATA))
	$(if $(EMNIST),,@echo "No EMNIST CSV files in '$(EMNIST_DIR)' (see data/README.md): training on Fashion-MNIST.")
	$(BUILD)/lenet5 $(DEMO_DATA)$(if $(EMNIST),, --names "$(FASHION_NAMES)") --model $(BUILD)/lenet5.cnn $(DEMO_ARGS)
# (the package is checked once, however many files; a failed gunzip leaves no file)
$(BUILD)/fashion-mnist/%-ubyte: | fashion-package
	@mkdir -p $(@D)
	gunzip -c /usr/share/datasets/fashion-mnist/$*-ubyte.gz >$@.tmp && mv $@.tmp $@
fashion-package:
	@sh tests/deps.sh fashion

# 10 epochs of each of MODELS on EMNIST, then a table (examples/emnist-all.sh); logs,
# pictures and models in $(BUILD)/emnist-all. EMNIST_ARGS adds options (--epochs 1).
MODELS ?= lenet5 mlp cnn
emnist-all: $(patsubst %,$(BUILD)/%,$(subst cnn-bn,cnn,$(MODELS)))
	@sh examples/emnist-all.sh $(BUILD) $(EMNIST_DIR) $(MODELS)

# LeNet-5 and the seed models trained by cnn.h and PyTorch on EMNIST, else Fashion-MNIST
# (README.md, "Benchmark"; tests/bench/run.sh). BENCH_SCALE=0.1: a quick look.
BENCH_CFLAGS ?= -O2
BENCH_DATA = $(or $(TRAIN_CSV),$(FASHION_TRAIN))
$(BUILD)/bench/bench: tests/bench/bench.c cnn.h examples/seed_models.h
	@mkdir -p $(@D)
	$(CC) $(C99) $(BENCH_CFLAGS) $(OPENMP) $< -o $@ -lm
bench: $(BUILD)/bench/bench $(BENCH_DATA)
	@sh tests/deps.sh openblas || echo "(OpenBLAS not installed: PyTorch runs on the reference BLAS)"
	@sh tests/bench/run.sh $(BUILD)/bench $(BENCH_DATA)

# LeNet-5, one epoch on $(EMNIST_DIR)/slice2k.csv (2,000 rows), else the allocation-failure
# test, under memcheck; without OpenMP, whose thread pool valgrind would report.
VALGRIND = valgrind --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=1
VALGRIND_CSV = $(wildcard $(EMNIST_DIR)/slice2k.csv)
VALGRIND_RUN = $(if $(VALGRIND_CSV),lenet5 --train $(VALGRIND_CSV) --test $(VALGRIND_CSV) --epochs 1 --batch 64 \
  --classes 47 --model $(BUILD)/valgrind/lenet5.cnn,tests/test_alloc_failure)
valgrind:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/valgrind CFLAGS="-O2 -g" OPENMP= $(BUILD)/valgrind/$(firstword $(VALGRIND_RUN))
	$(if $(VALGRIND_CSV),,@echo "no $(EMNIST_DIR)/slice2k.csv: running the allocation-failure test under valgrind instead")
	TEST_TMP=$(BUILD)/valgrind $(VALGRIND) $(BUILD)/valgrind/$(VALGRIND_RUN)

# make fuzz FUZZ_SECONDS=60: each libFuzzer target in turn from tests/fuzz/seeds.c's
# seeds (tests/fuzz/run.sh); a crash fails. stb-ignore.txt: stb, left alone by UBSan.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = csv idx mapping model safetensors image
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/stb-ignore.txt cnn.h
	@mkdir -p $(@D)
	clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 \
	  $(if $(filter image,$*),-fsanitize-ignorelist=tests/fuzz/stb-ignore.txt) -I$(STB_DIR) $< -o $@ -lm
$(BUILD)/fuzz/seeds/done: tests/fuzz/seeds.c tests/fuzz/fuzz.h cnn.h $(wildcard tests/interop/fixtures/*.safetensors)
	@mkdir -p $(@D)
	$(CC) $(C99) -O1 -I$(STB_DIR) $< -o $(BUILD)/fuzz/seeds-writer -lm
	rm -rf $(@D) && $(BUILD)/fuzz/seeds-writer $(@D) data/emnist-balanced-mapping.txt tests/interop/fixtures && touch $@
fuzz: $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS)) $(BUILD)/fuzz/seeds/done
	@sh tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The live round trip with PyTorch (tests/interop/README.md): LeNet-5 and the seed
# models initialised in PyTorch run in cnn.h, and trained in cnn.h run in PyTorch,
# within 1e-5; then cnnh.py's own tests. Needs python3-torch (tests/deps.sh torch).
INTEROP = $(BUILD)/interop
$(INTEROP)/roundtrip: tests/interop/roundtrip.c cnn.h tests/test.h examples/seed_models.h
	@mkdir -p $(@D)
	$(CC) $(C99) $(CFLAGS) $< -o $@ -lm
interop: $(INTEROP)/roundtrip
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "make interop needs PyTorch: sh tests/deps.sh torch"; exit 1; }
	@rm -rf $(INTEROP)/torch-to-c $(INTEROP)/c-to-torch && mkdir -p $(INTEROP)/torch-to-c $(INTEROP)/c-to-torch
	/usr/bin/python3 tests/interop/roundtrip.py torch-to-c $(INTEROP)/torch-to-c
	$(INTEROP)/roundtrip torch-to-c $(INTEROP)/torch-to-c
	$(INTEROP)/roundtrip c-to-torch $(INTEROP)/c-to-torch
	/usr/bin/python3 tests/interop/roundtrip.py c-to-torch $(INTEROP)/c-to-torch
	/usr/bin/python3 examples/pytorch/test_cnnh.py

# An emulated microcontroller (tests/mcu/README.md): MODEL (else a LeNet-5 trained here
# for two epochs on 5,000 rows) exported by build/export in float32 and int8, each
# cross-compiled for a Cortex-M4 (gcc-arm-none-eabi, newlib) and run in qemu-system-arm
# (mps2-an386) on MCU_IMAGES test images of EMNIST, else Fashion-MNIST; each must give
# the host's answers. Installs its packages (tests/deps.sh mcu), else says SKIPPED.
MODEL ?= $(BUILD)/lenet5.cnn
MCU_IMAGES ?= 300
.PHONY: mcu
$(BUILD)/mcu/host: tests/mcu/host.c cnn.h
	@mkdir -p $(@D)
	$(CC) $(C99) $(CFLAGS) $(OPENMP) $< -o $@ -lm
mcu: $(BUILD)/mcu/host $(BUILD)/export $(BUILD)/lenet5 $(if $(EMNIST),,$(FASHION_TRAIN) $(FASHION_TEST))
	@BUILD="$(BUILD)" MODEL="$(MODEL)" MCU_IMAGES="$(MCU_IMAGES)" $(if $(EMNIST),TRAIN_CSV="$(TRAIN_CSV)" TEST_CSV="$(TEST_CSV)", \
	  FASHION_TRAIN="$(FASHION_TRAIN)" FASHION_TEST="$(FASHION_TEST)") sh tests/mcu/run.sh $(BUILD)/mcu

# The model in a web page (examples/web; README.md, "In the browser"): cnn.h compiled by
# clang to a wasm32-wasi reactor (CNN_NO_FAST: the plain library, README.md says why), the page,
# its script and stylesheet, EMNIST's mapping and MODEL (copied as model.cnn) in $(WEB).
# Installs clang's wasm32 parts when missing (tests/deps.sh wasm).
WEB = $(BUILD)/web
WASM_CC ?= clang
WASM_FLAGS = --target=wasm32-wasi -mexec-model=reactor $(C99) -O2 -DCNN_NO_FAST -D_WASI_EMULATED_PROCESS_CLOCKS \
  -Wl,-z,stack-size=1048576 -Wl,--max-memory=1073741824 -Wl,--strip-all
WEB_PAGE = $(WEB)/cnn.wasm $(addprefix $(WEB)/,index.html web.js web.css emnist-balanced-mapping.txt)
.PHONY: web web-page test-web wasm-deps
$(WEB)/cnn.wasm: examples/web/web.c cnn.h | wasm-deps stb
	@mkdir -p $(@D)
	$(WASM_CC) $(WASM_FLAGS) -I$(STB_DIR) $< -o $@ -lwasi-emulated-process-clocks
$(WEB)/emnist-balanced-mapping.txt: data/emnist-balanced-mapping.txt
	@mkdir -p $(@D)
	cp $< $@
$(WEB)/%: examples/web/%
	@mkdir -p $(@D)
	cp $< $@
wasm-deps:
	@sh tests/deps.sh wasm
web-page: $(WEB_PAGE)
web: web-page
	@test -f "$(MODEL)" || { echo "make web: no model at $(MODEL): 'make demo' trains one (or make web MODEL=path)"; exit 1; }
	cp "$(MODEL)" $(WEB)/model.cnn
	@echo "$(WEB): cnn.wasm $$(wc -c <$(WEB)/cnn.wasm) bytes, model.cnn $$(wc -c <$(WEB)/model.cnn) bytes." \
	  "To use it: python3 -m http.server -b 127.0.0.1 -d $(WEB) 8000, then open http://127.0.0.1:8000/"

# The page in Debian's chromium, headless, driven by playwright-core (tests/web/README.md):
# MODEL when given, else a LeNet-5 trained here for one epoch on a slice of EMNIST (else
# Fashion-MNIST), and a small ResNet; pictures uploaded and strokes drawn, answers compared
# with build/predict's, bad files refused; screenshots in $(BUILD)/web-test. Installs its
# packages (tests/deps.sh web).
test-web: web-page $(BUILD)/predict $(BUILD)/lenet5 $(BUILD)/folders $(BUILD)/resnet $(if $(EMNIST),,$(FASHION_TRAIN) $(FASHION_TEST))
	@sh tests/deps.sh web
	@BUILD="$(BUILD)" MODEL="$(if $(filter command line environment,$(origin MODEL)),$(MODEL))" \
	  $(if $(EMNIST),TRAIN_CSV="$(TRAIN_CSV)" TEST_CSV="$(TEST_CSV)",FASHION_TRAIN="$(FASHION_TRAIN)" FASHION_TEST="$(FASHION_TEST)" \
	  FASHION_NAMES="$(FASHION_NAMES)") sh tests/web/run.sh $(BUILD)/web-test

# the PyTorch reference values tests/test_reference.c and tests/test_interop.c check (python3-torch)
fixtures:
	/usr/bin/python3 tests/reference/gen.py
	/usr/bin/python3 tests/interop/gen.py
clean:
	rm -rf $(BUILD)
