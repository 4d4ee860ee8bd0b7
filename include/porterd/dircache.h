/*
 * dircache — a bounded cache of one backend's answers, for backends that
 * answer over the network. The directory puts one in front of a backend
 * whose `directory` line carries cache_ttl=; the backend never knows.
 *
 * Definite answers (user, list, forward, moved) live for ttl, negative
 * ones (not found, ambiguous) for the shorter negative ttl; a temporary
 * failure is never kept. The cache holds at most size entries of at most
 * DIRCACHE_ENTRY_MAX octets each, evicting by CLOCK (second chance), so
 * its memory is bounded whatever the backend answers. A hit allocates
 * nothing: the answer points into the entry.
 */
#ifndef PORTERD_DIRCACHE_H
#define PORTERD_DIRCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "porterd/backend.h"

#define DIRCACHE_SIZE_DEFAULT 10000
#define DIRCACHE_SIZE_MAX 1000000
#define DIRCACHE_TTL_MAX 86400		/* seconds, for ttl and negative ttl */
#define DIRCACHE_NEGATIVE_DIVISOR 5	/* negative ttl by default: ttl / 5 */
/*
 * The largest answer kept, in octets of its copy: the entry's own fields,
 * the query, every string of the answer with its NUL, and a pointer per
 * list member. A list of about a hundred members fits; a larger one is
 * asked of the backend each time.
 */
#define DIRCACHE_ENTRY_MAX 4096

/* Milliseconds from a monotonic clock. */
typedef uint64_t dircache_clock_fn(void);

struct dircache_params {
	uint64_t ttl_ms;		/* definite answers; > 0 */
	uint64_t negative_ttl_ms;	/* not found, ambiguous; 0: not kept */
	size_t size;			/* entries, 1 .. DIRCACHE_SIZE_MAX */
	dircache_clock_fn *now_ms;	/* NULL: the monotonic clock */
};

struct dircache_stats {
	uint64_t hits;		/* lookups answered from the cache */
	uint64_t misses;	/* lookups that went to the backend */
	size_t entries;		/* answers held now (some may have expired) */
};

struct dircache;

/* A cache as p says (p is copied). Aborts when out of memory. */
struct dircache *dircache_new(const struct dircache_params *p);
void dircache_free(struct dircache **c);

/*
 * The answer kept for q, if one is and it has not expired: fills res_r,
 * whose strings stay valid until the next call on c (copy them at once),
 * and counts a hit. Otherwise counts a miss, lets an expired answer go,
 * and returns false.
 */
bool dircache_get(struct dircache *c, const struct dir_query *q,
		  struct dir_result *res_r);

/*
 * Keep a deep copy of the backend's answer res to q, replacing one kept
 * for q. Returns false, keeping nothing, for a temporary failure, a
 * negative answer when the negative ttl is 0, a broken answer (a user or
 * list without key, a forward or moved without target) and an answer
 * larger than DIRCACHE_ENTRY_MAX. A full cache evicts an entry not used
 * since the clock hand last passed it, an expired one first.
 */
bool dircache_put(struct dircache *c, const struct dir_query *q,
		  const struct dir_result *res);

void dircache_stats(const struct dircache *c, struct dircache_stats *s_r);
const struct dircache_params *dircache_params(const struct dircache *c);

/*
 * Take the cache parameters out of a `directory` line's arguments: words
 * cache_ttl=DURATION, cache_negative_ttl=DURATION and cache_size=N,
 * anywhere among them (words are separated by blanks outside '...' and
 * "..."). rest gets args without them (restsize >= strlen(args) + 1);
 * when there are none it is args unchanged. Returns 1 and fills p_r when
 * a cache is asked for, 0 when none is, -1 with a message in err
 * ("cache_ttl: ...") for a bad, repeated or unknown cache_ word.
 */
int dircache_take_params(const char *args, char *rest, size_t restsize,
			 struct dircache_params *p_r, char *err, size_t errsize);

#endif
