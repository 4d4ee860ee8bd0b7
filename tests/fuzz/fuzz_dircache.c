/*
 * fuzz_dircache — the directory's answer cache (dircache.c) driven by a
 * sequence of operations decoded from the input, against a plain model:
 * for every query of a small pool, the last answer put and kept, when it
 * expires, and whether it must still be there, may have been evicted, or
 * is surely gone. Time is a virtual clock (dircache_params.now_ms).
 *
 * Byte 0: the cache (size 1-16, ttl, negative ttl), or, when its top
 * three bits are all set, the rest is a `directory` line's arguments for
 * dircache_take_params. Byte 1 seeds the strings. Then operations, one
 * byte each and their operands: put a generated answer of any status
 * (strings short, long, near and over the 4 KiB copy limit, lists of up
 * to a thousand members, broken answers), get, advance the clock.
 *
 * Checks: put refuses what it must (temporary failures, negative answers
 * with no negative ttl, broken answers, copies over DIRCACHE_ENTRY_MAX)
 * and keeps what clearly fits; a get never answers for a query nothing
 * was kept for, never a temporary failure, never once expired, and with
 * strings equal to those put; an answer kept while the cache had room is
 * still there until it expires; entries never exceed size; the counters
 * add up. ASan's leak check covers the copies.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/dircache.h"

#include "fuzz_util.h"

#define POOL_NAMES 8
#define POOL_QUERIES (POOL_NAMES * 3)
#define GEN_STRING_MAX 6000	/* longer than any copy kept */
#define GEN_MEMBERS_MAX 1100
#define GEN_POOL (GEN_MEMBERS_MAX * 24 + 4 * GEN_STRING_MAX)
#define OPS_MAX 4096
/* What an entry may add to its strings and pointers: its own fields. */
#define ENTRY_HEAD_SLACK 128

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

/* ---- the input ---- */

struct input {
	const uint8_t *p, *end;
};

static uint8_t next_byte(struct input *in)
{
	return in->p < in->end ? *in->p++ : 0;
}

static bool input_left(const struct input *in)
{
	return in->p < in->end;
}

/* ---- the virtual clock ---- */

static uint64_t clock_now;

static uint64_t fuzz_clock(void)
{
	return clock_now;
}

/* ---- queries: lowercase, as the directory gives them ---- */

static char long_name[2][512];
static char pool_address[POOL_NAMES][600];

static const char *pool_name(size_t i)
{
	static const char *const short_names[] = {
		"jones", "a", "fred smith", "j\xc3\xb6rg", "smith", "",
	};

	if (i < 6)
		return short_names[i];
	return long_name[i - 6];
}

static void pool_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	memset(long_name[0], 'x', 64);		/* a local part at its limit */
	memset(long_name[1], 'y', 500);		/* a long free-text name */
	for (size_t i = 0; i < POOL_NAMES; i++)
		snprintf(pool_address[i], sizeof(pool_address[i]),
			 "%s@example.test", pool_name(i));
}

/* Query i: a bare name asked by name, the same bare name not by name
 * (a list member), or the name at a local domain. */
static struct dir_query pool_query(size_t i)
{
	size_t name = i % POOL_NAMES;

	switch (i / POOL_NAMES) {
	case 0:
		return (struct dir_query){ .local = pool_name(name), .by_name = true };
	case 1:
		return (struct dir_query){ .local = pool_name(name) };
	default:
		return (struct dir_query){ .address = pool_address[name],
					   .local = pool_name(name) };
	}
}

static size_t query_text_len(const struct dir_query *q)
{
	return strlen(q->address != NULL ? q->address : q->local);
}

/* ---- generated answers ---- */

struct generated {
	struct dir_result res;
	const char *members[GEN_MEMBERS_MAX];
	char pool[GEN_POOL];
	size_t used;
	bool broken;		/* a field its status needs is missing */
};

static const size_t string_lengths[] = {
	0, 1, 5, 20, 64, 255, 1000, 2000, 3900, 4000, 4030, 4050, 4090, 4096,
	4200, 5000,
};
static const size_t member_counts[] = {
	0, 1, 2, 3, 10, 50, 100, 200, 300, 400, 450, 500, 511, 512, 600, 1000,
};

/* A string of a length the byte picks (NULL for length 0), of octets
 * that differ from one put to the next. */
static const char *gen_string(struct generated *g, uint8_t b, uint8_t *seed)
{
	size_t len = string_lengths[b % (sizeof(string_lengths) / sizeof(*string_lengths))];
	char *s;

	if (len == 0)
		return NULL;
	if (b >= 0x80 && len > 3)
		len -= b % 4;	/* 1-3 octets short of the round figure */
	if (g->used + len + 1 > sizeof(g->pool))
		return NULL;
	s = g->pool + g->used;
	for (size_t i = 0; i < len; i++)
		s[i] = (char)('a' + (*seed + i * 7) % 26);
	s[0] = (char)('A' + *seed % 26);	/* stored as given: no case folding */
	s[len] = '\0';
	g->used += len + 1;
	(*seed)++;
	return s;
}

/* Short member strings, some of them equal (a cache keeps them as given). */
static void gen_members(struct generated *g, struct input *in, uint8_t *seed)
{
	uint8_t b = next_byte(in), lenb = next_byte(in);
	size_t n = member_counts[b % (sizeof(member_counts) / sizeof(*member_counts))];
	size_t len = 1 + lenb % 20;

	g->res.nmembers = n;
	g->res.members = n > 0 ? g->members : (b & 0x10 ? g->members : NULL);
	for (size_t i = 0; i < n; i++) {
		char *s;

		if (g->used + len + 1 > sizeof(g->pool))
			fuzz_fail("dircache: generation pool too small");
		s = g->pool + g->used;
		snprintf(s, len + 1, "%0*zu", (int)len, (i * (*seed + 1u)) % 100000);
		g->used += len + 1;
		g->members[i] = s;
	}
	/* A list member left NULL: a broken answer, never kept. */
	if (n > 0 && (b & 0xe0) == 0xe0) {
		g->members[lenb % n] = NULL;
		g->broken = true;
	}
	(*seed)++;
}

/*
 * An answer of the status the input picks, with the fields backend.h
 * says it carries (or, now and then, without one it needs: broken).
 */
static void gen_answer(struct generated *g, struct input *in, uint8_t *seed)
{
	uint8_t st = next_byte(in), shape = next_byte(in);

	memset(&g->res, 0, sizeof(g->res));
	g->used = 0;
	g->broken = false;
	g->res.status = (enum dir_status)(st % (DIR_TOO_LARGE + 1));
	switch (g->res.status) {
	case DIR_USER:
		g->res.key = gen_string(g, next_byte(in), seed);
		g->res.fullname = gen_string(g, next_byte(in), seed);
		g->broken = g->res.key == NULL;
		break;
	case DIR_LIST:
		g->res.key = gen_string(g, next_byte(in), seed);
		gen_members(g, in, seed);
		g->broken |= g->res.key == NULL;
		break;
	case DIR_FORWARD:
	case DIR_MOVED:
		if (shape & 1)
			g->res.key = gen_string(g, next_byte(in), seed);
		g->res.target = gen_string(g, next_byte(in), seed);
		g->broken = g->res.target == NULL;
		break;
	default:
		break;
	}
}

/* Octets of the copy the header counts: the query, every string with
 * its NUL, a pointer per member; the entry's own fields are extra. */
static size_t answer_payload(const struct dir_query *q, const struct dir_result *r)
{
	size_t n = query_text_len(q) + 1;
	const char *s[] = { r->key, r->fullname, r->target };

	for (size_t i = 0; i < 3; i++)
		n += s[i] != NULL ? strlen(s[i]) + 1 : 0;
	if (r->status == DIR_LIST) {
		n += r->nmembers * sizeof(char *);
		for (size_t i = 0; i < r->nmembers; i++)
			n += r->members[i] != NULL ? strlen(r->members[i]) + 1 : 0;
	}
	return n;
}

/* ---- the model ---- */

enum presence { ABSENT, PRESENT, MAYBE };

/* An answer kept, copied flat (what a put keeps fits DIRCACHE_ENTRY_MAX). */
struct kept {
	enum presence state;
	uint64_t expires_ms;
	enum dir_status status;
	bool has_key, has_fullname, has_target;
	size_t key, fullname, target;	/* offsets into text */
	size_t nmembers;
	size_t members[DIRCACHE_ENTRY_MAX / sizeof(char *)];
	char text[DIRCACHE_ENTRY_MAX];
	size_t used;
};

struct model {
	struct kept q[POOL_QUERIES];
	struct dircache_params p;
	uint64_t gets, hits;
};

static size_t kept_add(struct kept *k, const char *s)
{
	size_t n = strlen(s) + 1, at = k->used;

	if (at + n > sizeof(k->text))
		fuzz_fail("dircache: kept an answer larger than DIRCACHE_ENTRY_MAX");
	memcpy(k->text + at, s, n);
	k->used += n;
	return at;
}

static void kept_set(struct kept *k, const struct dir_result *r, uint64_t expires)
{
	k->state = PRESENT;
	k->expires_ms = expires;
	k->status = r->status;
	k->used = 0;
	k->has_key = r->key != NULL;
	k->has_fullname = r->fullname != NULL;
	k->has_target = r->target != NULL;
	if (k->has_key)
		k->key = kept_add(k, r->key);
	if (k->has_fullname)
		k->fullname = kept_add(k, r->fullname);
	if (k->has_target)
		k->target = kept_add(k, r->target);
	k->nmembers = r->status == DIR_LIST ? r->nmembers : 0;
	for (size_t i = 0; i < k->nmembers; i++)
		k->members[i] = kept_add(k, r->members[i]);
}

static uint64_t status_ttl(const struct model *m, enum dir_status st)
{
	switch (st) {
	case DIR_USER:
	case DIR_LIST:
	case DIR_FORWARD:
	case DIR_MOVED:
		return m->p.ttl_ms;
	case DIR_NOTFOUND:
	case DIR_AMBIGUOUS:
		return m->p.negative_ttl_ms;
	default:
		return 0;
	}
}

static size_t model_count(const struct model *m, enum presence state)
{
	size_t n = 0;

	for (size_t i = 0; i < POOL_QUERIES; i++)
		n += m->q[i].state == state;
	return n;
}

static struct dircache_stats cache_stats(const struct dircache *c)
{
	struct dircache_stats s;

	dircache_stats(c, &s);
	return s;
}

/* Entries held agree with the model, and never exceed size. */
static void check_bounds(const struct dircache *c, const struct model *m)
{
	struct dircache_stats s = cache_stats(c);
	size_t present = model_count(m, PRESENT), maybe = model_count(m, MAYBE);

	if (s.entries > m->p.size)
		fuzz_fail("dircache: %zu entries, size %zu", s.entries, m->p.size);
	if (s.entries < present || s.entries > present + maybe)
		fuzz_fail("dircache: %zu entries, the model %zu sure and %zu maybe",
			  s.entries, present, maybe);
	if (s.hits != m->hits || s.hits + s.misses != m->gets)
		fuzz_fail("dircache: %llu hits and %llu misses for %llu gets, %llu hits",
			  (unsigned long long)s.hits, (unsigned long long)s.misses,
			  (unsigned long long)m->gets, (unsigned long long)m->hits);
}

/* ---- operations ---- */

static void op_put(struct dircache *c, struct model *m, struct input *in,
		   uint8_t *seed)
{
	static struct generated g;
	size_t qi = next_byte(in) % POOL_QUERIES;
	struct dir_query q = pool_query(qi);
	struct kept *k = &m->q[qi];
	size_t before = cache_stats(c).entries, after, payload;
	uint64_t ttl;
	bool kept;

	gen_answer(&g, in, seed);
	ttl = status_ttl(m, g.res.status);
	payload = answer_payload(&q, &g.res);
	kept = dircache_put(c, &q, &g.res);
	after = cache_stats(c).entries;
	if (kept && (ttl == 0 || g.broken))
		fuzz_fail("dircache: kept status %d (ttl %llu, broken %d)",
			  (int)g.res.status, (unsigned long long)ttl, (int)g.broken);
	if (kept && payload > DIRCACHE_ENTRY_MAX)
		fuzz_fail("dircache: kept an answer of %zu octets", payload);
	if (!kept && ttl > 0 && !g.broken &&
	    payload + ENTRY_HEAD_SLACK <= DIRCACHE_ENTRY_MAX)
		fuzz_fail("dircache: refused status %d of %zu octets",
			  (int)g.res.status, payload);
	if (!kept) {
		if (after != before)
			fuzz_fail("dircache: a refused put changed entries %zu -> %zu",
				  before, after);
		return;
	}
	if (k->state == PRESENT && after != before)
		fuzz_fail("dircache: replacing changed entries %zu -> %zu", before, after);
	if (k->state == ABSENT && after != before + 1 &&
	    !(before == m->p.size && after == before))
		fuzz_fail("dircache: a new answer took entries %zu -> %zu (size %zu)",
			  before, after, m->p.size);
	/* Another answer may have been evicted: no longer sure of any. */
	if (k->state != PRESENT && before == m->p.size && after == before)
		for (size_t i = 0; i < POOL_QUERIES; i++)
			if (m->q[i].state == PRESENT)
				m->q[i].state = MAYBE;
	kept_set(k, &g.res, clock_now + ttl);
}

static void expect_string(const char *got, bool has, const struct kept *k,
			  size_t off, const char *what)
{
	if (!has) {
		if (got != NULL)
			fuzz_fail("dircache: %s '%.40s' where none was put", what, got);
		return;
	}
	if (got == NULL || strcmp(got, k->text + off) != 0)
		fuzz_fail("dircache: %s '%.40s', put '%.40s'", what,
			  got != NULL ? got : "(null)", k->text + off);
}

static void check_hit(const struct dir_result *r, const struct kept *k)
{
	if (r->status == DIR_TEMPFAIL || r->status == DIR_NOT_LOCAL ||
	    r->status == DIR_TOO_LARGE)
		fuzz_fail("dircache: answered status %d", (int)r->status);
	if (r->status != k->status)
		fuzz_fail("dircache: status %d, put %d", (int)r->status, (int)k->status);
	expect_string(r->key, k->has_key, k, k->key, "key");
	expect_string(r->fullname, k->has_fullname, k, k->fullname, "fullname");
	expect_string(r->target, k->has_target, k, k->target, "target");
	if (r->nmembers != k->nmembers)
		fuzz_fail("dircache: %zu members, put %zu", r->nmembers, k->nmembers);
	if (r->nmembers > 0 && r->members == NULL)
		fuzz_fail("dircache: members NULL");
	for (size_t i = 0; i < r->nmembers; i++)
		expect_string(r->members[i], true, k, k->members[i], "member");
}

static void op_get(struct dircache *c, struct model *m, struct input *in)
{
	size_t qi = next_byte(in) % POOL_QUERIES;
	struct dir_query q = pool_query(qi);
	struct kept *k = &m->q[qi];
	struct dir_result r;
	bool hit;

	memset(&r, 0x5a, sizeof(r));
	hit = dircache_get(c, &q, &r);
	m->gets++;
	m->hits += hit;
	if (hit) {
		if (k->state == ABSENT)
			fuzz_fail("dircache: a hit for query %zu, nothing kept", qi);
		if (clock_now >= k->expires_ms)
			fuzz_fail("dircache: a hit %llu ms after it expired",
				  (unsigned long long)(clock_now - k->expires_ms));
		check_hit(&r, k);
		k->state = PRESENT;
		return;
	}
	if (k->state == PRESENT && clock_now < k->expires_ms)
		fuzz_fail("dircache: a miss for query %zu, kept while there was room "
			  "and %llu ms left", qi,
			  (unsigned long long)(k->expires_ms - clock_now));
	k->state = ABSENT;	/* evicted, or expired and let go */
}

static void op_tick(const struct model *m, struct input *in)
{
	uint8_t b = next_byte(in);
	const uint64_t steps[] = {
		0, 1, m->p.ttl_ms - 1, m->p.ttl_ms,
		m->p.negative_ttl_ms > 0 ? m->p.negative_ttl_ms - 1 : 0,
		m->p.negative_ttl_ms, 1000, 3600000,
	};

	clock_now += b < 8 ? steps[b] : b;
}

/* ---- dircache_take_params on text ---- */

/* Where a word of a directive's arguments ends, as dircache.h says:
 * at a blank outside '...' and "...", a backslash quoting in them. */
static const char *args_word_end(const char *s)
{
	char quote = 0;

	for (; *s != '\0'; s++) {
		if (quote != 0 && *s == '\\' && s[1] != '\0')
			s++;
		else if (quote != 0 && *s == quote)
			quote = 0;
		else if (quote == 0 && (*s == '\'' || *s == '"'))
			quote = *s;
		else if (quote == 0 && (*s == ' ' || *s == '\t'))
			break;
	}
	return s;
}

/* The next word of s and its end; NULL when only blanks are left. */
static const char *args_word(const char *s, const char **end_r)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return NULL;
	*end_r = args_word_end(s);
	return s;
}

/* A cache_NAME=VALUE word, which take_params takes out (a '/' before
 * the '=' makes it a path, the backend's). */
static bool word_is_cache(const char *w, size_t len)
{
	const char *eq = memchr(w, '=', len), *slash = memchr(w, '/', len);

	return len > 6 && memcmp(w, "cache_", 6) == 0 && eq != NULL &&
	       (slash == NULL || slash > eq);
}

/* rest holds the words of args that are not cache words, in order. */
static void check_rest_words(const char *args, const char *rest)
{
	const char *a = args, *r = rest, *ae = NULL, *re = NULL;

	for (;;) {
		while ((a = args_word(a, &ae)) != NULL && word_is_cache(a, (size_t)(ae - a)))
			a = ae;
		r = args_word(r, &re);
		if (a == NULL || r == NULL)
			break;
		if (ae - a != re - r || memcmp(a, r, (size_t)(ae - a)) != 0)
			fuzz_fail("dircache: rest word '%.*s', args word '%.*s'",
				  (int)(re - r), r, (int)(ae - a), a);
		a = ae;
		r = re;
	}
	if (a != NULL || r != NULL)
		fuzz_fail("dircache: rest '%s' and args '%s' differ in words", rest, args);
}

static void fuzz_take_params(const uint8_t *data, size_t size)
{
	char *args = malloc(size + 1), *rest = malloc(size + 1);
	struct dircache_params p;
	char err[256];
	int rc;

	if (args == NULL || rest == NULL)
		abort();
	memcpy(args, data, size);
	args[size] = '\0';
	memset(err, 0x55, sizeof(err));
	memset(&p, 0x55, sizeof(p));
	rc = dircache_take_params(args, rest, size + 1, &p, err, sizeof(err));
	if (rc < 0) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			fuzz_fail("dircache: take_params error not terminated or empty");
	} else if (rc == 0) {
		if (strcmp(rest, args) != 0)
			fuzz_fail("dircache: no cache words, yet rest '%s' is not args '%s'",
				  rest, args);
	} else if (rc == 1) {
		if (p.ttl_ms < 1000 || p.ttl_ms > DIRCACHE_TTL_MAX * 1000ULL ||
		    p.negative_ttl_ms > DIRCACHE_TTL_MAX * 1000ULL || p.size < 1 ||
		    p.size > DIRCACHE_SIZE_MAX || p.now_ms != NULL)
			fuzz_fail("dircache: take_params out of bounds: ttl %llu "
				  "negative %llu size %zu", (unsigned long long)p.ttl_ms,
				  (unsigned long long)p.negative_ttl_ms, p.size);
		check_rest_words(args, rest);
	} else {
		fuzz_fail("dircache: take_params returned %d", rc);
	}
	free(args);
	free(rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t sizes[] = { 1, 2, 3, 4, 5, 8, 16, 16 };
	static const uint64_t ttls[] = { 1, 2, 100, 1000, 10000, 60000, 86400000, 3 };
	static const uint64_t negatives[] = { 0, 1, 50, 2000 };
	static struct model m;
	struct input in = { data, data + size };
	struct dircache *c;
	uint8_t b0, seed;
	size_t ops = 0;

	if (size < 2)
		return 0;
	b0 = next_byte(&in);
	if ((b0 & 0xe0) == 0xe0) {
		fuzz_take_params(data + 1, size - 1);
		return 0;
	}
	pool_init();
	memset(&m, 0, sizeof(m));
	m.p = (struct dircache_params){
		.size = sizes[b0 % 8], .ttl_ms = ttls[b0 / 8 % 8],
		.negative_ttl_ms = negatives[b0 / 64 % 4], .now_ms = fuzz_clock,
	};
	seed = next_byte(&in);
	clock_now = 1000 + seed;
	c = dircache_new(&m.p);
	if (dircache_params(c)->size != m.p.size ||
	    dircache_params(c)->ttl_ms != m.p.ttl_ms ||
	    dircache_params(c)->negative_ttl_ms != m.p.negative_ttl_ms)
		fuzz_fail("dircache: params not as given");
	while (input_left(&in) && ops++ < OPS_MAX) {
		switch (next_byte(&in) % 4) {
		case 0:
		case 1:
			op_put(c, &m, &in, &seed);
			break;
		case 2:
			op_get(c, &m, &in);
			break;
		default:
			op_tick(&m, &in);
			break;
		}
		check_bounds(c, &m);
	}
	dircache_free(&c);
	if (c != NULL)
		fuzz_fail("dircache: free did not clear the pointer");
	return 0;
}
