/*
 * dircache — one backend's answers, kept for a while, in bounded memory.
 *
 * Slots are allocated once, at their number's full count; an answer is
 * copied into one allocation of its own on insert, so a hit copies and
 * allocates nothing.
 * Buckets chain slots by index; a full cache evicts with CLOCK: the hand
 * passes over the slots, a slot used since its last pass gets a second
 * chance, the first one not used (or expired) goes.
 *
 * It must never keep a temporary failure (that would turn a passing outage
 * into a lasting one), never grow past size entries of DIRCACHE_ENTRY_MAX
 * octets, and never hand out an answer past its time.
 */
#include "porterd/dircache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "porterd/strutil.h"
#include "porterd/textscan.h"

#define NO_SLOT 0		/* slot links are index + 1 */
#define BY_NAME_SALT 0x9e3779b97f4a7c15ULL

/* One answer and the query it answers, in one allocation. */
struct entry {
	enum dir_status status;
	bool by_name;
	const char *query;	/* address, or local part for a bare query */
	const char *key, *fullname, *target;
	size_t nmembers;
	const char *members[];	/* then the strings */
};

struct slot {
	struct entry *e;	/* NULL: free */
	uint64_t hash;
	uint64_t expires_ms;
	uint32_t next;		/* bucket chain, or free list */
	bool referenced;	/* hit since the hand last passed */
};

struct dircache {
	struct dircache_params p;
	struct slot *slots;	/* p.size of them */
	uint32_t *buckets;	/* mask + 1 chain heads */
	size_t mask;
	size_t used;		/* slots ever taken; below them, free_head */
	uint32_t free_head;
	size_t hand;
	struct dircache_stats stats;
};

/* What a query is looked up by. */
struct query_key {
	const char *text;
	size_t len;
	bool by_name;
	uint64_t hash;
};

/* Every hit reads the clock: the coarse one costs a fraction of the
 * precise one, and a few milliseconds are nothing to a ttl in seconds. */
#ifdef CLOCK_MONOTONIC_COARSE
#define DIRCACHE_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define DIRCACHE_CLOCK CLOCK_MONOTONIC
#endif

static uint64_t clock_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(DIRCACHE_CLOCK, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *alloc_or_abort(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		abort();	/* bounded by DIRCACHE_SIZE_MAX: out of memory is fatal */
	return p;
}

struct dircache *dircache_new(const struct dircache_params *p)
{
	struct dircache *c = alloc_or_abort(1, sizeof(*c));
	size_t nbuckets = 16;

	if (p->size == 0 || p->size > DIRCACHE_SIZE_MAX)
		abort();	/* dircache_take_params() enforces the bounds */
	while (nbuckets < p->size)
		nbuckets *= 2;
	c->p = *p;
	if (c->p.now_ms == NULL)
		c->p.now_ms = clock_monotonic_ms;
	c->slots = alloc_or_abort(p->size, sizeof(*c->slots));
	c->buckets = alloc_or_abort(nbuckets, sizeof(*c->buckets));
	c->mask = nbuckets - 1;
	return c;
}

void dircache_free(struct dircache **cp)
{
	struct dircache *c = *cp;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->used; i++)
		free(c->slots[i].e);
	free(c->slots);
	free(c->buckets);
	free(c);
	*cp = NULL;
}

/* --- the index --------------------------------------------------------------- */

static void key_of(const struct dir_query *q, struct query_key *k)
{
	uint64_t h;

	k->text = q->address != NULL ? q->address : q->local;
	k->len = strlen(k->text);
	k->by_name = q->by_name;
	/* FNV's low bits are weak and place the bucket: spread them. */
	h = str_hash_nocase(k->text, k->len) ^ (k->by_name ? BY_NAME_SALT : 0);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	k->hash = h;
}

static bool slot_matches(const struct slot *s, const struct query_key *k)
{
	return s->hash == k->hash && s->e->by_name == k->by_name &&
	       strncmp(s->e->query, k->text, k->len) == 0 &&
	       s->e->query[k->len] == '\0';
}

/* The slot (index + 1) holding k, or NO_SLOT. */
static uint32_t slot_find(const struct dircache *c, const struct query_key *k)
{
	uint32_t i = c->buckets[k->hash & c->mask];

	while (i != NO_SLOT && !slot_matches(&c->slots[i - 1], k))
		i = c->slots[i - 1].next;
	return i;
}

static void slot_unlink(struct dircache *c, size_t idx)
{
	uint32_t *link = &c->buckets[c->slots[idx].hash & c->mask];

	while (*link != idx + 1) {
		if (*link == NO_SLOT)
			abort();	/* an occupied slot is always in its chain */
		link = &c->slots[*link - 1].next;
	}
	*link = c->slots[idx].next;
}

/* Empty slot idx; its answer is freed. */
static void slot_clear(struct dircache *c, size_t idx)
{
	struct slot *s = &c->slots[idx];

	slot_unlink(c, idx);
	free(s->e);
	s->e = NULL;
	c->stats.entries--;
}

static void slot_release(struct dircache *c, size_t idx)
{
	slot_clear(c, idx);
	c->slots[idx].next = c->free_head;
	c->free_head = (uint32_t)idx + 1;
}

/* The CLOCK hand's choice; every slot is occupied. One pass clears every
 * referenced bit, so the second pass at the latest finds a victim. */
static size_t slot_evict(struct dircache *c)
{
	uint64_t now = c->p.now_ms();

	for (size_t n = 0; n <= 2 * c->p.size; n++) {
		size_t idx = c->hand;
		struct slot *s = &c->slots[idx];

		c->hand = (c->hand + 1) % c->p.size;
		if (!s->referenced || now >= s->expires_ms) {
			slot_clear(c, idx);
			return idx;
		}
		s->referenced = false;
	}
	abort();	/* unreachable: see above */
}

static size_t slot_take(struct dircache *c)
{
	if (c->free_head != NO_SLOT) {
		size_t idx = c->free_head - 1;

		c->free_head = c->slots[idx].next;
		return idx;
	}
	if (c->used < c->p.size)
		return c->used++;
	return slot_evict(c);
}

/* --- answers ----------------------------------------------------------------- */

bool dircache_get(struct dircache *c, const struct dir_query *q,
		  struct dir_result *res_r)
{
	struct query_key k;
	uint32_t i;
	struct slot *s;
	const struct entry *e;

	key_of(q, &k);
	i = slot_find(c, &k);
	if (i == NO_SLOT) {
		c->stats.misses++;
		return false;
	}
	s = &c->slots[i - 1];
	if (c->p.now_ms() >= s->expires_ms) {
		slot_release(c, i - 1);
		c->stats.misses++;
		return false;
	}
	s->referenced = true;
	c->stats.hits++;
	e = s->e;
	*res_r = (struct dir_result){
		.status = e->status, .key = e->key, .fullname = e->fullname,
		.target = e->target, .members = e->members, .nmembers = e->nmembers,
	};
	return true;
}

/* How long res may be kept; 0: not at all. */
static uint64_t answer_ttl(const struct dircache *c, const struct dir_result *res)
{
	switch (res->status) {
	case DIR_USER:
	case DIR_LIST:
		return res->key != NULL ? c->p.ttl_ms : 0;
	case DIR_FORWARD:
	case DIR_MOVED:
		return res->target != NULL ? c->p.ttl_ms : 0;
	case DIR_NOTFOUND:
	case DIR_AMBIGUOUS:
		return c->p.negative_ttl_ms;
	default:
		return 0;	/* temporary failures above all */
	}
}

static size_t string_size(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

/* Octets of the entry for res, or more than DIRCACHE_ENTRY_MAX; a huge
 * list is not walked past the bound. */
static size_t entry_size(const struct query_key *k, const struct dir_result *res)
{
	size_t n = sizeof(struct entry) + k->len + 1 + string_size(res->key) +
		   string_size(res->fullname) + string_size(res->target);

	if (res->status != DIR_LIST)
		return n;
	if (res->nmembers > DIRCACHE_ENTRY_MAX / sizeof(char *))
		return DIRCACHE_ENTRY_MAX + 1;
	n += res->nmembers * sizeof(char *);
	for (size_t i = 0; i < res->nmembers && n <= DIRCACHE_ENTRY_MAX; i++) {
		if (res->members[i] == NULL)
			return DIRCACHE_ENTRY_MAX + 1;	/* broken: not kept */
		n += strlen(res->members[i]) + 1;
	}
	return n;
}

/* Copy s to *at, advancing it; NULL stays NULL. */
static const char *pack(char **at, const char *s)
{
	size_t size = string_size(s);
	char *p = *at;

	if (s == NULL)
		return NULL;
	memcpy(p, s, size);
	*at = p + size;
	return p;
}

static struct entry *entry_build(const struct query_key *k,
				 const struct dir_result *res, size_t size)
{
	struct entry *e = malloc(size);
	size_t nmembers = res->status == DIR_LIST ? res->nmembers : 0;
	char *at;

	if (e == NULL)
		return NULL;	/* not kept: the answer itself is still right */
	e->status = res->status;
	e->by_name = k->by_name;
	e->nmembers = nmembers;
	at = (char *)&e->members[nmembers];
	e->query = pack(&at, k->text);
	e->key = pack(&at, res->key);
	e->fullname = pack(&at, res->fullname);
	e->target = pack(&at, res->target);
	for (size_t i = 0; i < nmembers; i++)
		e->members[i] = pack(&at, res->members[i]);
	return e;
}

bool dircache_put(struct dircache *c, const struct dir_query *q,
		  const struct dir_result *res)
{
	uint64_t ttl = answer_ttl(c, res);
	struct query_key k;
	struct entry *e;
	size_t size, idx;
	uint32_t found;

	if (ttl == 0)
		return false;
	key_of(q, &k);
	size = entry_size(&k, res);
	if (size > DIRCACHE_ENTRY_MAX || (e = entry_build(&k, res, size)) == NULL)
		return false;
	found = slot_find(c, &k);
	if (found != NO_SLOT) {
		idx = found - 1;
		free(c->slots[idx].e);
	} else {
		idx = slot_take(c);
		c->slots[idx].hash = k.hash;
		c->slots[idx].next = c->buckets[k.hash & c->mask];
		c->buckets[k.hash & c->mask] = (uint32_t)idx + 1;
		c->slots[idx].referenced = false;
		c->stats.entries++;
	}
	c->slots[idx].e = e;
	c->slots[idx].expires_ms = c->p.now_ms() + ttl;
	return true;
}

void dircache_stats(const struct dircache *c, struct dircache_stats *s_r)
{
	*s_r = c->stats;
}

const struct dircache_params *dircache_params(const struct dircache *c)
{
	return &c->p;
}

/* --- the directive's parameters ---------------------------------------------- */

enum param_kind { PARAM_TTL, PARAM_NEGATIVE_TTL, PARAM_SIZE, PARAM__COUNT };

/* Every cache parameter: its word, whether a time or a count, its bounds. */
static const struct param {
	const char *name;
	bool is_time;
	uint64_t lo, hi;
} params[PARAM__COUNT] = {
	[PARAM_TTL] = { "cache_ttl", true, 1, DIRCACHE_TTL_MAX },
	[PARAM_NEGATIVE_TTL] = { "cache_negative_ttl", true, 0, DIRCACHE_TTL_MAX },
	[PARAM_SIZE] = { "cache_size", false, 1, DIRCACHE_SIZE_MAX },
};

struct param_values {
	uint64_t v[PARAM__COUNT];
	bool given[PARAM__COUNT];
};

/* Where the word at s ends: at a blank outside quotes, or the end. Quotes
 * keep a conninfo value with blanks in it ('a b') one word. */
static const char *word_end(const char *s)
{
	char quote = 0;

	for (; *s != '\0'; s++) {
		if (quote != 0) {
			if (*s == '\\' && s[1] != '\0')
				s++;
			else if (*s == quote)
				quote = 0;
		} else if (*s == '\'' || *s == '"') {
			quote = *s;
		} else if (text_is_blank(*s)) {
			break;
		}
	}
	return s;
}

static const struct param *param_find(const char *name, size_t len)
{
	for (size_t i = 0; i < PARAM__COUNT; i++)
		if (strlen(params[i].name) == len && memcmp(params[i].name, name, len) == 0)
			return &params[i];
	return NULL;
}

/*
 * Whether the word w (len octets) is a cache parameter: "cache_", a name,
 * '=' and a value — or a known name alone, which is a mistake to report.
 * Anything else ("cache_dir/x.table") is the backend's.
 */
static bool is_cache_word(const char *w, size_t len, size_t *namelen_r)
{
	static const char prefix[] = "cache_";
	const char *eq = memchr(w, '=', len), *slash = memchr(w, '/', len);

	if (len <= sizeof(prefix) - 1 || memcmp(w, prefix, sizeof(prefix) - 1) != 0)
		return false;
	if (eq == NULL) {
		*namelen_r = len;
		return param_find(w, len) != NULL;
	}
	*namelen_r = (size_t)(eq - w);
	return slash == NULL || slash > eq;
}

/* A time (digits with an optional s, m or h) or a number. */
static bool parse_value(const char *s, size_t len, bool is_time, uint64_t *v_r)
{
	return is_time ? str_parse_seconds(s, len, v_r)
		       : str_parse_digits(s, len, v_r);
}

static int param_error(char *err, size_t errsize, const struct param *p,
		       const char *value, size_t len)
{
	if (p->is_time)
		return str_error(err, errsize, "%s: " QUOTED " is not a time from %llus "
				 "to %llus (a number with s, m or h)", p->name,
				 SHOWN(value, len), (unsigned long long)p->lo,
				 (unsigned long long)p->hi);
	return str_error(err, errsize, "%s: " QUOTED " is not a number from %llu to %llu",
			 p->name, SHOWN(value, len), (unsigned long long)p->lo,
			 (unsigned long long)p->hi);
}

/* One cache word, name namelen octets of w (len octets). */
static int param_take(struct param_values *pv, const char *w, size_t len,
		      size_t namelen, char *err, size_t errsize)
{
	const struct param *p = param_find(w, namelen);
	uint64_t v;
	size_t i;

	if (p == NULL)
		return str_error(err, errsize, "unknown cache parameter " QUOTED
				 " (known: cache_ttl, cache_negative_ttl, cache_size)",
				 SHOWN(w, namelen));
	i = (size_t)(p - params);
	if (namelen == len) {
		snprintf(err, errsize, "%s: expected %s=%s", p->name, p->name,
			 p->is_time ? "DURATION" : "N");
		return -1;
	}
	if (pv->given[i]) {
		snprintf(err, errsize, "%s given twice", p->name);
		return -1;
	}
	if (!parse_value(w + namelen + 1, len - namelen - 1, p->is_time, &v) ||
	    v < p->lo || v > p->hi)
		return param_error(err, errsize, p, w + namelen + 1, len - namelen - 1);
	pv->v[i] = v;
	pv->given[i] = true;
	return 0;
}

static int params_finish(const struct param_values *pv, struct dircache_params *p_r,
			 char *err, size_t errsize)
{
	for (size_t i = 0; i < PARAM__COUNT; i++) {
		if (pv->given[i] && !pv->given[PARAM_TTL]) {
			snprintf(err, errsize, "%s needs cache_ttl", params[i].name);
			return -1;
		}
	}
	if (!pv->given[PARAM_TTL])
		return 0;
	p_r->ttl_ms = pv->v[PARAM_TTL] * 1000;
	p_r->negative_ttl_ms = pv->given[PARAM_NEGATIVE_TTL]
		? pv->v[PARAM_NEGATIVE_TTL] * 1000
		: p_r->ttl_ms / DIRCACHE_NEGATIVE_DIVISOR;
	p_r->size = pv->given[PARAM_SIZE] ? (size_t)pv->v[PARAM_SIZE]
					  : DIRCACHE_SIZE_DEFAULT;
	p_r->now_ms = NULL;
	return 1;
}

int dircache_take_params(const char *args, char *rest, size_t restsize,
			 struct dircache_params *p_r, char *err, size_t errsize)
{
	struct param_values pv = { { 0 }, { false } };
	const char *s = args != NULL ? args : "";
	size_t out = 0;
	bool dropped = false;

	if (strlen(s) >= restsize) {
		snprintf(err, errsize, "arguments too long");
		return -1;
	}
	while (*s != '\0') {
		const char *blanks = s, *w, *e;
		size_t namelen;

		w = text_skip_blanks_str(s);
		e = word_end(w);
		s = e;
		if (w < e && is_cache_word(w, (size_t)(e - w), &namelen)) {
			if (param_take(&pv, w, (size_t)(e - w), namelen, err, errsize) < 0)
				return -1;
			dropped = true;
			continue;
		}
		if (out == 0 && dropped)
			blanks = w;	/* the rest starts with its first word */
		memcpy(rest + out, blanks, (size_t)(e - blanks));
		out += (size_t)(e - blanks);
	}
	rest[out] = '\0';
	return params_finish(&pv, p_r, err, errsize);
}
