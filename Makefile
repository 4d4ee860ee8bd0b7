# porterd — build, run, test and install.
#
#   make          build build/porterd (installs missing Debian packages first)
#   make run      build and run porterd in the foreground with conf/porterd.conf
#   make test     unit suites, the same under ASan+UBSan, integration tests
#   make install  PREFIX=/usr/local DESTDIR= (binary, config, man pages,
#                 systemd units; the porterd system user when run as root)
#   make bench    porterd against a canned-reply reference (bench/run.py);
#                 BENCH_ARGS="--quick" or "--only session,idle" for less
#   make fuzz     libFuzzer targets (tests/fuzz/fuzz.mk; make test runs each
#                 briefly and replays tests/fuzz/regressions)
#   make clean

PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DESTDIR    ?=

CC       ?= cc
BUILD    ?= build
SANITIZE ?=
DEPS      = sh .ci/deps

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral
BASEFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude $(WARN) -g -pthread
ifeq ($(SANITIZE),1)
OPTFLAGS  = -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
OPTFLAGS  = -O2
endif

# Evaluated when a recipe runs, after .ci/deps has installed pkg-config files.
# The directory backends' libraries (LMDB, libpq), and libsystemd for
# sd_notify when it is there (the installed unit is then Type=notify).
HAVE_SYSTEMD = $(shell pkg-config --exists libsystemd && echo yes)
LIB_PKGS     = libevent lmdb libpq $(if $(HAVE_SYSTEMD),libsystemd)
LIB_CFLAGS   = $(shell pkg-config --cflags $(LIB_PKGS)) $(if $(HAVE_SYSTEMD),-DHAVE_LIBSYSTEMD)
LIBS         = $(shell pkg-config --libs $(LIB_PKGS))
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)

ALL_CFLAGS = $(BASEFLAGS) $(OPTFLAGS) $(LIB_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(OPTFLAGS) -pthread $(LDFLAGS)

LIB_SRCS  = $(filter-out src/main.c src/makemap_main.c,$(wildcard src/*.c src/backends/*.c))
LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HEADERS   = $(wildcard include/porterd/*.h)

CONF_DEFAULT = conf/porterd.conf
# How long `make test` runs each fuzz target (make fuzz-run for longer).
TEST_FUZZ_SECONDS ?= 15
CONF_INSTALLED = $(SYSCONFDIR)/porterd/porterd.conf

.PHONY: all build run test unit unit-asan integration install clean deps-build deps-test \
	bench bench-tools

all: deps-build
	@$(MAKE) --no-print-directory build

deps-build:
	@$(DEPS) build

deps-test:
	@$(DEPS) test

build: $(BUILD)/porterd $(BUILD)/porterd-makemap

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libporterd.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/porterd: $(BUILD)/obj/src/main.o $(BUILD)/libporterd.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Compiles a table file into the map the lmdb backend reads.
$(BUILD)/porterd-makemap: $(BUILD)/obj/src/makemap_main.o $(BUILD)/libporterd.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# The installed binary reads /etc/porterd/porterd.conf by default.
$(BUILD)/installed/main.o: src/main.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DPORTERD_CONF_DEFAULT='"$(CONF_INSTALLED)"' -c -o $@ $<

$(BUILD)/installed/porterd: $(BUILD)/installed/main.o $(BUILD)/libporterd.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libporterd.a $(HEADERS) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libporterd.a \
		$(LIBS) $(CHECK_LIBS) $(ALL_LDFLAGS)

# The benchmark's load generator and reference responder: plain C, libc only.
BENCH_BINS = $(BUILD)/bench/load $(BUILD)/bench/limit

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(OPTFLAGS) $(CFLAGS) -o $@ $< $(ALL_LDFLAGS)

# Times lookups through a directory backend (table or lmdb) itself.
$(BUILD)/bench/lookup: bench/lookup.c $(BUILD)/libporterd.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libporterd.a $(LIBS) $(ALL_LDFLAGS)

bench-tools: $(BENCH_BINS) $(BUILD)/bench/lookup

bench: all
	@$(MAKE) --no-print-directory $(BUILD)/porterd $(BENCH_BINS)
	python3 bench/run.py $(BENCH_ARGS)

# As root porterd runs as conf/porterd.conf's user, nobody: its Maildirs
# under build/mail must be nobody's.
run: all
	@if [ "$$(id -u)" -eq 0 ]; then \
		mkdir -p build/mail && chown -R nobody:nogroup build/mail; \
	fi
	./$(BUILD)/porterd -c $(CONF_DEFAULT)

# Unit suites (Check), then the same under ASan+UBSan, then the real daemon.
test: deps-build deps-test
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit BUILD=build/asan SANITIZE=1
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory integration BUILD=build/asan SANITIZE=1
	@$(MAKE) --no-print-directory fuzz-regress
	@$(MAKE) --no-print-directory fuzz-smoke FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do \
		echo "== $$t"; \
		CK_DEFAULT_TIMEOUT=30 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./$$t; \
	done

integration: $(BUILD)/porterd $(BUILD)/porterd-makemap $(BENCH_BINS)
	python3 tests/integration/run.py --porterd $(BUILD)/porterd --bench $(BUILD)/bench \
		--make-vars "BUILD=$(BUILD) SANITIZE=$(SANITIZE)"

install: all $(BUILD)/installed/porterd
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(SYSCONFDIR)/porterd $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/installed/porterd $(DESTDIR)$(SBINDIR)/porterd
	install -m 755 $(BUILD)/porterd-makemap $(DESTDIR)$(SBINDIR)/porterd-makemap
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@CONF@|$(CONF_INSTALLED)|g' \
		-e 's|@TYPE@|$(if $(HAVE_SYSTEMD),notify,simple)|g' \
		conf/porterd.service.in > $(DESTDIR)$(UNITDIR)/porterd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/porterd.service
	install -m 644 conf/porterd.socket $(DESTDIR)$(UNITDIR)/porterd.socket
	@# The account porterd serves as; only on the real system, as root.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && ! getent passwd porterd >/dev/null; then \
		echo "useradd --system porterd"; \
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --comment "porterd ESMTP server" porterd; \
	fi
	@# The installed config's Maildir root, porterd's own (Debian's
	@# /var/mail itself is root:mail).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && [ ! -d /var/mail/vhosts ]; then \
		echo "install -d -o porterd -g porterd -m 750 /var/mail/vhosts"; \
		install -d -o porterd -g porterd -m 750 /var/mail/vhosts; \
	fi
	install -m 644 man/porterd.8 $(DESTDIR)$(MANDIR)/man8/porterd.8
	install -m 644 man/porterd.conf.5 $(DESTDIR)$(MANDIR)/man5/porterd.conf.5
	install -m 644 man/porterd.table.5 $(DESTDIR)$(MANDIR)/man5/porterd.table.5
	install -m 644 man/porterd-makemap.8 $(DESTDIR)$(MANDIR)/man8/porterd-makemap.8
	@# An administrator's configuration is never overwritten.
	@for f in porterd.conf example.table; do \
		if [ -e $(DESTDIR)$(SYSCONFDIR)/porterd/$$f ]; then \
			echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/porterd/$$f"; \
		else \
			sed -f conf/install.sed conf/$$f > $(DESTDIR)$(SYSCONFDIR)/porterd/$$f; \
			chmod 644 $(DESTDIR)$(SYSCONFDIR)/porterd/$$f; \
		fi; \
	done

clean:
	rm -rf build

include tests/fuzz/fuzz.mk
