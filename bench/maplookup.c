/*
 * maplookup — times lookups in an LMDB map through the `lmdb` backend
 * itself, as porterd makes them.
 *
 *   maplookup MAP [N [HOT]]
 *
 * MAP is made by porterd-makemap from a table that bench/gen_table.py
 * wrote: entry i (0 <= i < the map's count) is the key "user<i>", a user
 * named "Given<i % 1000> Family<i / 1000>". maplookup opens the map, then
 * asks N (default 1000000) random existing keys, N keys that are not
 * there ("user<i>x", which sort among them), and N/10 whole full names (free-text, as "VRFY Given7 Family42"),
 * each set twice: a first pass that faults the pages in, and the pass it
 * reports, in CPU time of this thread (and in wall time beside it).
 * Every answer is checked, so a wrong map fails the run. With HOT, the
 * queries are drawn from HOT random entries only: the cost of a lookup
 * alone, with the lines of the map it reads in the CPU caches.
 * One result line a set; it runs once, in one thread, and stops by itself.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "porterd/backend.h"

#define QUERY_MAX 64

struct query_set {
	const char *what;
	char (*text)[QUERY_MAX];
	size_t n;
	bool by_name;
	enum dir_status want;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

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

/* Wall time, for the open. */
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
	enum dir_status *got = arg;

	*got = res->status;
}

/* Ask every query of s once; false on an answer other than s->want. */
static bool run_set(struct backend *be, const struct query_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct dir_query q = { .local = s->text[i], .by_name = s->by_name };
		enum dir_status got = DIR_TEMPFAIL;

		backend_lmdb_ops.lookup(be, &q, on_answer, &got);
		if (got != s->want) {
			fprintf(stderr, "maplookup: %s: \"%s\" answered %d, not %d\n",
				s->what, s->text[i], (int)got, (int)s->want);
			return false;
		}
	}
	return true;
}

static bool measure(struct backend *be, const struct query_set *s)
{
	double t0, w0, cold, warm, wall;

	t0 = cpu_s();
	if (!run_set(be, s))
		return false;
	cold = cpu_s() - t0;
	w0 = now_s();
	t0 = cpu_s();
	if (!run_set(be, s))
		return false;
	warm = cpu_s() - t0;
	wall = now_s() - w0;
	printf("%-9s lookups=%zu  %.0f/s  %.0f ns each  (first pass %.0f ns; "
	       "wall %.0f ns)\n", s->what, s->n, (double)s->n / warm,
	       warm * 1e9 / (double)s->n, cold * 1e9 / (double)s->n,
	       wall * 1e9 / (double)s->n);
	return true;
}

/* Entry numbers to ask: any of the map's, or hot ones drawn from it. */
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
			/* Beside "user<r>" in key order, where a search of
			 * a sorted map goes as deep as for a key that is
			 * there; a hash table gives it no such help. */
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
	int rc = 0;

	if (argc < 2 || argc > 4 ||
	    (argc >= 3 && (n = strtoul(argv[2], NULL, 10)) == 0) ||
	    (argc == 4 && (p.nhot = strtoul(argv[3], NULL, 10)) == 0)) {
		fprintf(stderr, "usage: maplookup MAP [N [HOT]]\n");
		return 2;
	}
	t0 = now_s();
	if (backend_lmdb_ops.open(argv[1], NULL, &be, err, sizeof(err)) < 0) {
		fprintf(stderr, "maplookup: %s\n", err);
		return 1;
	}
	p.entries = backend_lmdb_ops.count(be);
	printf("map=%s entries=%zu open=%.2f ms%s\n", argv[1], p.entries,
	       (now_s() - t0) * 1e3, p.nhot > 0 ? " (hot keys only)" : "");
	if (p.nhot > 0) {
		p.hot = calloc(p.nhot, sizeof(*p.hot));
		if (p.hot == NULL) {
			fprintf(stderr, "maplookup: out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < p.nhot; i++)
			p.hot[i] = rng_next() % p.entries;
	}
	for (int k = 0; k < 3 && p.entries > 0; k++) {
		sets[k].n = k == 2 ? n / 10 : n;
		sets[k].text = calloc(sets[k].n, QUERY_MAX);
		if (sets[k].text == NULL) {
			fprintf(stderr, "maplookup: out of memory\n");
			return 1;
		}
		fill(&sets[k], &p, k);
		if (!measure(be, &sets[k]))
			rc = 1;
	}
	for (int k = 0; k < 3; k++)
		free(sets[k].text);
	free(p.hot);
	backend_lmdb_ops.close(&be);
	return rc;
}
