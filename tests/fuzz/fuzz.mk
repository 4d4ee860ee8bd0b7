# tests/fuzz/fuzz.mk — libFuzzer targets for porterd; the Makefile includes it.
#
#   make fuzz            build $(BUILD)/fuzz/fuzz_<target> with clang,
#                        ASan, UBSan and libFuzzer (the sources in src/ are
#                        compiled again here, not taken from libporterd.a)
#   make fuzz-smoke      run each target FUZZ_SECONDS (20) on a copy of its
#                        corpus in a temporary directory; fails if any fails
#   make fuzz-regress    replay tests/fuzz/regressions/<target>-* once each
#                        (FUZZ_TIMEOUT and FUZZ_RSS_MB apply)
#   make fuzz-run FUZZ_TARGET=session [FUZZ_SECONDS=600]
#                        one target, longer, keeping what it finds in
#                        $(BUILD)/fuzz/work/<target> (crashes in .../artifacts)
#   make fuzz-clean
#
# Targets: command (command.c, address.c), session (the whole session with a
# table directory and Maildir delivery), config (config_parse), table (the
# table backend), dataread (DATA framing against a reference model),
# ratelimit (the token buckets against their stated guarantee), aliases
# (the aliases backend, :include: files, a table behind it), passwd (the
# passwd backend on a passwd(5) file), dircache (the answer cache against
# a model, on a virtual clock). Each is
# tests/fuzz/fuzz_<target>.c with its seeds in tests/fuzz/corpus/<target>/;
# tests/fuzz/smtp.dict serves them all. See tests/fuzz/README.md.

FUZZ_CC       ?= clang
FUZZ_BUILD     = $(if $(BUILD),$(BUILD),build)
FUZZ_DIR       = $(FUZZ_BUILD)/fuzz
FUZZ_SRC_DIR  := tests/fuzz
FUZZ_TARGETS  := command session config table dataread ratelimit aliases passwd \
                 dircache
FUZZ_TARGET   ?= session
FUZZ_SECONDS  ?= 20
FUZZ_TIMEOUT  ?= 10
FUZZ_RSS_MB   ?= 2048
FUZZ_FLAGS    ?=

FUZZ_SANITIZE  = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS   ?= -g -O1 -fno-omit-frame-pointer
FUZZ_ALL_CFLAGS = $(FUZZ_SANITIZE) $(FUZZ_CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L \
                  -D_DEFAULT_SOURCE -Iinclude -pthread -Wall -Wextra \
                  $(LIB_CFLAGS)
FUZZ_LIBS      = $(LIBS)

# Every module but the program and the socket layer the harnesses stand in
# for (conn.c, server.c), so a new module is picked up without an edit here.
FUZZ_NOT_LIB  := src/main.c src/makemap_main.c src/conn.c src/server.c
FUZZ_LIB_SRCS := $(filter-out $(FUZZ_NOT_LIB),$(wildcard src/*.c src/backends/*.c))
FUZZ_LIB_OBJS  = $(FUZZ_LIB_SRCS:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_HEADERS   = $(if $(HEADERS),$(HEADERS),$(wildcard include/porterd/*.h))
FUZZ_BINS      = $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_DICT      = $(FUZZ_SRC_DIR)/smtp.dict
FUZZ_RUN_FLAGS = -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) \
                 -dict=$(FUZZ_DICT) -print_final_stats=1 $(FUZZ_FLAGS)

.PHONY: fuzz fuzz-smoke fuzz-regress fuzz-run fuzz-clean
# Built by a pattern rule for pattern-built targets: keep them, or make
# deletes them as intermediates and rebuilds them every time.
.SECONDARY: $(FUZZ_LIB_OBJS)

fuzz: $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: %.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: $(FUZZ_SRC_DIR)/fuzz_%.c $(FUZZ_SRC_DIR)/fuzz_util.h $(FUZZ_LIB_OBJS) $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -o $@ $< $(FUZZ_LIB_OBJS) $(FUZZ_LIBS)

# Each target on a copy of its corpus, so the tree is never written to.
# A failure keeps its temporary directory (log, crashing input) and names it.
fuzz-smoke: fuzz
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
		tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/porterd-fuzz-$$t.XXXXXX") || exit 1; \
		mkdir -p "$$tmp/corpus" "$$tmp/artifacts"; \
		if [ -d $(FUZZ_SRC_DIR)/corpus/$$t ]; then \
			cp -R $(FUZZ_SRC_DIR)/corpus/$$t/. "$$tmp/corpus/"; fi; \
		echo "== fuzz_$$t, $(FUZZ_SECONDS)s"; \
		if $(FUZZ_DIR)/fuzz_$$t $(FUZZ_RUN_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix="$$tmp/artifacts/" "$$tmp/corpus" >"$$tmp/log" 2>&1; then \
			grep -E '^#[0-9]+' "$$tmp/log" | tail -n 1; \
			rm -rf "$$tmp"; \
		else \
			tail -n 60 "$$tmp/log"; \
			echo "fuzz_$$t FAILED: log and input kept in $$tmp"; \
			failed="$$failed $$t"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-smoke: failed:$$failed"; exit 1; fi

# Every saved crash, replayed once; fails while any still crashes, runs
# out of memory or takes longer than FUZZ_TIMEOUT.
fuzz-regress: fuzz
	@mkdir -p $(FUZZ_DIR)/artifacts; failed=""; \
	for f in $(wildcard $(FUZZ_SRC_DIR)/regressions/*-*); do \
		b=$${f##*/}; t=$${b%%-*}; \
		if $(FUZZ_DIR)/fuzz_$$t -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) \
			-artifact_prefix=$(FUZZ_DIR)/artifacts/regress- \
			"$$f" >/dev/null 2>&1; then \
			echo "ok      $$f"; \
		else \
			echo "CRASHES $$f  ($(FUZZ_DIR)/fuzz_$$t $$f)"; failed="$$failed $$b"; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-regress: still crashing:$$failed"; exit 1; fi

fuzz-run: $(FUZZ_DIR)/fuzz_$(FUZZ_TARGET)
	@mkdir -p $(FUZZ_DIR)/work/$(FUZZ_TARGET) $(FUZZ_DIR)/artifacts
	$(FUZZ_DIR)/fuzz_$(FUZZ_TARGET) $(FUZZ_RUN_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=$(FUZZ_DIR)/artifacts/$(FUZZ_TARGET)- \
		$(FUZZ_DIR)/work/$(FUZZ_TARGET) $(FUZZ_SRC_DIR)/corpus/$(FUZZ_TARGET)

fuzz-clean:
	rm -rf $(FUZZ_DIR)
