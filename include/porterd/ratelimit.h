/*
 * ratelimit — a per-client token bucket for the answers a harvester wants:
 * VRFY, EXPN and failed RCPT, counted across sessions. The session takes
 * one token per such answer; when none is left it answers VRFY with the
 * generic 252 and EXPN with 550 5.7.1 (that is the session's business,
 * this module only says yes or no).
 *
 * Clients are bucketed by address: IPv4 by the whole address (an
 * IPv4-mapped IPv6 address is the IPv4 client it carries), IPv6 by its
 * first v6_prefix bits, because one host commonly owns a /64 or more.
 *
 * The table is bounded: it holds at most max_entries buckets, allocated
 * once by ratelimit_new(); no call allocates, and every call examines at
 * most RATELIMIT_WORK_MAX index slots and buckets, however many addresses
 * a client sprays. Only a full bucket is ever evicted to make room: it is
 * exactly a fresh one, so eviction never gives any client a token back.
 * A new client that finds no full bucket to replace is charged to one
 * shared overflow bucket (rate per period too) until room comes back.
 * However many addresses clients spray, all of them together get at most
 * (max_entries + 1) × rate answers at once and as many per period after
 * (see ratelimit.c).
 *
 * Pure: no I/O, no clock of its own (the caller passes monotonic
 * milliseconds), no randomness. Not thread-safe; one table per event loop.
 */
#ifndef PORTERD_RATELIMIT_H
#define PORTERD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* Most buckets one table may hold (the `rate_table_size` bound). */
#define RATELIMIT_ENTRIES_MAX (16u * 1024 * 1024)

/* Longest IPv6 prefix; the usual one, a /64 (one LAN, one host's worth). */
#define RATELIMIT_V6_PREFIX_MAX 128
#define RATELIMIT_V6_PREFIX_DEFAULT 64

/* Most index slots and buckets one call examines, whatever the table holds
 * and whatever addresses clients use. */
#define RATELIMIT_WORK_MAX 32

/*
 * A table allowing rate tokens per period_secs to each client, with a
 * burst of rate (a new client starts full); at most max_entries client
 * buckets; IPv6 clients bucketed by their first v6_prefix bits, IPv4
 * clients by the whole address.
 *
 * NULL when an argument is out of range (rate or period_secs 0, max_entries
 * 0 or above RATELIMIT_ENTRIES_MAX, v6_prefix above 128, rate × period too
 * large to count exactly) or memory runs out. Memory is allocated once,
 * here: about 56 to 72 bytes per entry.
 */
struct ratelimit *ratelimit_new(unsigned rate, unsigned period_secs,
				size_t max_entries, unsigned v6_prefix);

/* Free the table and set *rl to NULL; NULL and *rl == NULL are fine. */
void ratelimit_free(struct ratelimit **rl);

/*
 * Take one token for client_addr (printable: "192.0.2.1", "2001:db8::1",
 * "::ffff:192.0.2.1") at now_ms, the caller's monotonic clock in
 * milliseconds. True when a token was taken and the answer is allowed.
 *
 * Tokens come back at rate per period, counted exactly (no fraction of a
 * token is lost however often the client calls), up to rate. A now_ms
 * earlier than one already seen for the bucket adds nothing. An address
 * that does not parse (NULL, "", a scoped "fe80::1%eth0") shares one
 * bucket with every other unparsable address.
 */
bool ratelimit_take(struct ratelimit *rl, const char *client_addr, uint64_t now_ms);

/* Tokens client_addr's own bucket has left at now_ms, fractions included
 * (for tests and logs). A client the table does not hold reports a full
 * bucket, rate, though its next take may be charged to the overflow bucket
 * if the table has no room then. Changes nothing. */
double ratelimit_tokens(const struct ratelimit *rl, const char *client_addr,
			uint64_t now_ms);

/* Buckets held now; never more than max_entries. */
size_t ratelimit_entries(const struct ratelimit *rl);

/* Counters since ratelimit_new(), for a log line about table pressure. */
struct ratelimit_stats {
	size_t entries;		/* as ratelimit_entries() */
	uint64_t evicted;	/* full buckets replaced: nothing lost */
	uint64_t overflowed;	/* takes charged to the shared overflow bucket
				 * for want of room: a steady rise says the
				 * table is too small or being sprayed */
	unsigned max_work;	/* most slots and buckets one call examined;
				 * never above RATELIMIT_WORK_MAX */
};

void ratelimit_get_stats(const struct ratelimit *rl, struct ratelimit_stats *stats_r);

#endif
