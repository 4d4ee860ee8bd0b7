/*
 * lookup — times lookups through a directory backend itself, as porterd
 * makes them: a table file (`table`, the default) or a map porterd-makemap
 * compiled from one (`-b lmdb`).
 *
 *   lookup [-b table|lmdb] [-k] [-o SET] FILE [N [HOT]]
 *
 * The table is written by bench/gen_table.py: entry i (0 <= i < the table's
 * count) is the key "user<i>", a user named "Given<i % 1000> Family<i /
 * 1000>". lookup opens it, then asks N (default 1000000)
 * random existing keys, N keys that are not there ("user<i>x"), and N/10
 * whole full names (free-text, as "VRFY Given7 Family42"), each set six
 * times: a first pass that faults the pages in, then five it reports the
 * median of, in CPU time of this thread (and in wall time beside it).
 * Every answer is checked, and its key and full name are copied out as
 * the directory does, so the text an answer points to is read.
 *
 * With HOT, the queries are drawn from HOT random entries only (porterd's
 * benchmark asks 997 addresses spread over its table). With -k, each
 * lookup follows a system call, as the server's reads and writes come
 * between its lookups: the kernel's work leaves the caches and the TLB
 * cold, and that is where a large table pays. With -o, only SET
 * (existing, missing or fullname) runs, for a cache simulator's count of
 * one set. Each set's line also gives the ticks (time-stamp counter
 * cycles on x86, else ns) measured around each lookup alone, system calls
 * left out: the figure to compare with -k.
 * One result line a set; it runs once, in one thread, and stops by itself.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "porterd/backend.h"
#include "porterd/strutil.h"

#define QUERY_MAX 64
#define COPY_MAX 1024		/* the key and full name copied out */
#define TABLE_PASSES 5		/* measured passes a set, median kept */

struct query_set {
	const char *what;
	char (*text)[QUERY_MAX];
	size_t n;
	bool by_name;
	enum dir_status want;
};

/* What an answer left: its status, and its strings copied out. */
struct answer {
	enum dir_status status;
	char copy[COPY_MAX];
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static bool kernel_between;
static uint64_t lookup_ticks;	/* around the lookups alone, this pass */

/* xorshift64*: cheap, and the same sequence every run. */
static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static double clock_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A tick count read around one lookup only, so the system calls of -k
 * stay out of it: the time-stamp counter where there is one (ordered
 * against the lookup by the fences), else nanoseconds.
 */
static uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint64_t t;

	_mm_lfence();
	t = __rdtsc();
	_mm_lfence();
	return t;
#else
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/* Wall time, for the load. */
static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/*
 * The CPU time of this thread, for the lookups: the machine is shared,
 * and time spent descheduled is no cost of a lookup.
 */
static double cpu_s(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static void on_answer(const struct dir_result *res, void *arg)
{
	struct answer *a = arg;

	a->status = res->status;
	if (res->key != NULL)
		str_copy(a->copy, sizeof(a->copy), res->key, strlen(res->key));
	if (res->fullname != NULL)
		str_copy(a->copy, sizeof(a->copy), res->fullname,
			 strlen(res->fullname));
}

/* The backend asked: -b, table by default. */
static const struct backend_ops *ops = &backend_table_ops;

static const struct backend_ops *backend_named(const char *name)
{
	if (strcmp(name, "table") == 0)
		return &backend_table_ops;
	if (strcmp(name, "lmdb") == 0)
		return &backend_lmdb_ops;
	return NULL;
}

/* Ask every query of s once; false on an answer other than s->want. */
static bool run_set(struct backend *be, const struct query_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct dir_query q = { .local = s->text[i], .by_name = s->by_name };
		struct answer a;	/* copy[] left as it is: 1 KiB to clear */
		uint64_t t0;

		a.status = DIR_TEMPFAIL;

		if (kernel_between)
			(void)syscall(SYS_getppid);
		t0 = ticks();
		ops->lookup(be, &q, on_answer, &a);
		lookup_ticks += ticks() - t0;
		if (a.status != s->want) {
			fprintf(stderr, "lookup: %s: \"%s\" answered %d, not %d\n",
				s->what, s->text[i], (int)a.status, (int)s->want);
			return false;
		}
	}
	return true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* A first pass that faults the pages in, then TABLE_PASSES measured ones:
 * each figure is its median over them, as others' work comes and goes. */
static bool measure(struct backend *be, const struct query_set *s)
{
	double cpu[TABLE_PASSES], wall[TABLE_PASSES], tick[TABLE_PASSES];
	double t0, w0, cold, n = (double)s->n;

	t0 = cpu_s();
	if (!run_set(be, s))
		return false;
	cold = cpu_s() - t0;
	for (int i = 0; i < TABLE_PASSES; i++) {
		w0 = now_s();
		t0 = cpu_s();
		lookup_ticks = 0;
		if (!run_set(be, s))
			return false;
		cpu[i] = cpu_s() - t0;
		wall[i] = now_s() - w0;
		tick[i] = (double)lookup_ticks;
	}
	qsort(cpu, TABLE_PASSES, sizeof(cpu[0]), cmp_double);
	qsort(wall, TABLE_PASSES, sizeof(wall[0]), cmp_double);
	qsort(tick, TABLE_PASSES, sizeof(tick[0]), cmp_double);
	printf("%-9s lookups=%zu  %.0f/s  %.0f ns each  (first pass %.0f ns; "
	       "wall %.0f ns)  ticks=%.0f each around the lookup\n", s->what,
	       s->n, n / cpu[TABLE_PASSES / 2], cpu[TABLE_PASSES / 2] * 1e9 / n,
	       cold * 1e9 / n, wall[TABLE_PASSES / 2] * 1e9 / n,
	       tick[TABLE_PASSES / 2] / n);
	return true;
}

/* Entry numbers to ask: any of the table's, or hot ones drawn from it. */
struct picker {
	size_t entries;
	uint64_t *hot;
	size_t nhot;
};

static uint64_t pick(const struct picker *p)
{
	return p->nhot > 0 ? p->hot[rng_next() % p->nhot] : rng_next() % p->entries;
}

static void fill(struct query_set *s, const struct picker *p, int kind)
{
	for (size_t i = 0; i < s->n; i++) {
		uint64_t r = pick(p);

		if (kind == 0)
			snprintf(s->text[i], QUERY_MAX, "user%llu", (unsigned long long)r);
		else if (kind == 1)
			snprintf(s->text[i], QUERY_MAX, "user%llux", (unsigned long long)r);
		else
			snprintf(s->text[i], QUERY_MAX, "given%llu family%llu",
				 (unsigned long long)(r % 1000),
				 (unsigned long long)(r / 1000));
	}
}

int main(int argc, char **argv)
{
	struct query_set sets[] = {
		{ "existing", NULL, 0, false, DIR_USER },
		{ "missing", NULL, 0, false, DIR_NOTFOUND },
		{ "fullname", NULL, 0, true, DIR_USER },
	};
	struct backend *be = NULL;
	struct picker p = { 0 };
	char err[1024];
	size_t n = 1000000;
	double t0;
	const char *only = NULL;
	int rc = 0, a = 1;

	for (; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "-k") == 0)
			kernel_between = true;
		else if (strcmp(argv[a], "-b") == 0 && a + 1 < argc)
			ops = backend_named(argv[++a]);
		else if (strcmp(argv[a], "-o") == 0 && a + 1 < argc)
			only = argv[++a];
		else
			break;
	}
	if (ops == NULL || argc - a < 1 || argc - a > 3 ||
	    (argc - a >= 2 && (n = strtoul(argv[a + 1], NULL, 10)) == 0) ||
	    (argc - a == 3 && (p.nhot = strtoul(argv[a + 2], NULL, 10)) == 0)) {
		fprintf(stderr, "usage: lookup [-b table|lmdb] [-k] [-o SET] FILE [N [HOT]]\n");
		return 2;
	}
	if (only != NULL && strcmp(only, "existing") != 0 &&
	    strcmp(only, "missing") != 0 && strcmp(only, "fullname") != 0) {
		fprintf(stderr, "lookup: -o: existing, missing or fullname\n");
		return 2;
	}
	t0 = now_s();
	if (ops->open(argv[a], NULL, &be, err, sizeof(err)) < 0) {
		fprintf(stderr, "lookup: %s\n", err);
		return 1;
	}
	p.entries = ops->count(be);
	printf("%s=%s entries=%zu load=%.2f ms%s%s\n", ops->name, argv[a], p.entries,
	       (now_s() - t0) * 1e3, p.nhot > 0 ? " (hot keys only)" : "",
	       kernel_between ? " (a system call before each lookup)" : "");
	if (p.nhot > 0) {
		p.hot = calloc(p.nhot, sizeof(*p.hot));
		if (p.hot == NULL) {
			fprintf(stderr, "lookup: out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < p.nhot; i++)
			p.hot[i] = rng_next() % p.entries;
	}
	for (int k = 0; k < 3 && p.entries > 0; k++) {
		if (only != NULL && strcmp(only, sets[k].what) != 0)
			continue;
		sets[k].n = k == 2 ? n / 10 : n;
		sets[k].text = calloc(sets[k].n, QUERY_MAX);
		if (sets[k].text == NULL) {
			fprintf(stderr, "lookup: out of memory\n");
			return 1;
		}
		fill(&sets[k], &p, k);
		if (!measure(be, &sets[k]))
			rc = 1;
	}
	for (int k = 0; k < 3; k++)
		free(sets[k].text);
	free(p.hot);
	ops->close(&be);
	return rc;
}
