/*
 * ratelimit — per-client token buckets across sessions, so that harvesting
 * addresses through VRFY, EXPN and RCPT costs an attacker hours whatever
 * addresses it connects from.
 *
 * It must never allocate after ratelimit_new(), do I/O or read a clock,
 * let one call examine more than RATELIMIT_WORK_MAX slots and buckets, or
 * give a client a token back by forgetting it: a client spraying addresses
 * can neither grow the table, slow it down, nor reset a spent bucket.
 *
 * Layout. Buckets live in a dense array of at most max_entries. An index of
 * 2 × max_entries or more slots (a power of two) finds them: open
 * addressing into groups of RL_GROUP_SLOTS slots, one cache line, a key
 * living in any slot of the one group its hash names. A lookup scans that
 * group and nothing else, so probing is bounded by construction, and
 * deleting is clearing one slot: no tombstones, no backward shift, because
 * no key's place depends on another's. (Linear probing with backward-shift
 * deletion bounds neither: an aimed cluster makes both the probe and the
 * shift as long as the table.)
 *
 * Tokens are counted in units of 1/period_ms token: a millisecond adds
 * exactly `rate` units, a token costs period_ms units, a full bucket holds
 * rate × period_ms. Integers throughout, so every boundary is exact and a
 * client calling every millisecond loses no fraction of a token.
 *
 * Eviction. A new client needs a bucket; when its group is full, or the
 * table holds max_entries, one must go. Only a full bucket may: full is
 * exactly what a fresh bucket is, so replacing it changes no client's
 * allowance. Candidates are the group's buckets when the group is full,
 * else the next RL_SAMPLE buckets under a clock hand sweeping the dense
 * array (so every full bucket is reached within max_entries / RL_SAMPLE
 * tries). A new client that finds no full candidate gets no bucket: it is
 * charged to the overflow bucket, shared by all such clients, until a
 * bucket refills (at most one period after its last take).
 *
 * The guarantee: eviction never creates tokens. The tokens held by all
 * buckets, overflow included, never exceed (max_entries + 1) × rate, and
 * refill adds no more than that per period, so all clients together, with
 * any number of addresses, get at most (max_entries + 1) × rate × (1 +
 * T / period) answers in T. A drained bucket stays drained however many
 * fresh addresses are sprayed past it. A policy that falls back to
 * evicting the least recently used (or most refilled) bucket would let an
 * attacker with one address more than its sample, group or table holds
 * cycle through them, each return evicting a drained bucket and starting
 * full: unlimited answers. Here that attacker gets the overflow bucket.
 * The cost falls on new clients while the table is saturated: they share
 * the overflow bucket, so their VRFY gets the generic 252 and their EXPN
 * 550 sooner (the session only spends the budget on a failed RCPT, never
 * refuses one for it). Saturating takes max_entries clients that have all
 * spent within the last period: one that spent a single token is full
 * again period / rate later (2 s at 30/min).
 *
 * The hash is fixed, not secret: aiming keys at one group can only fill
 * it, sending later new clients of that group to the overflow bucket.
 */
#include "porterd/ratelimit.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define RL_GROUP_SLOTS 8	/* 8 slots of 8 bytes: one cache line */
#define RL_GROUP_ALIGN 64
#define RL_SAMPLE 8		/* buckets the clock hand tries per new client */
#define RL_V4_BITS 32

/* A lookup examines a group and dereferences at most each of its buckets;
 * then a full group's buckets, or the clock hand's, and one moved bucket. */
_Static_assert(2 * RL_GROUP_SLOTS + RL_SAMPLE + 1 <= RATELIMIT_WORK_MAX,
	       "RATELIMIT_WORK_MAX is below what one call may examine");
_Static_assert(RL_GROUP_SLOTS >= RL_SAMPLE, "a full group is a sample");
_Static_assert(RATELIMIT_ENTRIES_MAX < UINT32_MAX / 4, "positions are uint32_t");

/* How the key was made: keys of different kinds never match. */
enum rl_kind {
	RL_KIND_NONE,		/* zeroed memory: matches no key */
	RL_KIND_V4,		/* ::ffff:a.b.c.d, the whole address */
	RL_KIND_V6,		/* the address masked to v6_prefix */
	RL_KIND_UNPARSABLE,	/* all zero: one bucket for all of them */
};

struct rl_key {
	unsigned char addr[16];
	enum rl_kind kind;
};

/* tag: the low half of the key's hash; pos: bucket index + 1, 0 = empty. */
struct rl_slot {
	uint32_t tag;
	uint32_t pos;
};

struct rl_bucket {
	unsigned char addr[16];
	uint8_t kind;		/* enum rl_kind */
	uint32_t slot;		/* its index slot, to delete it in one step */
	uint64_t units;		/* tokens × period_ms */
	uint64_t last_ms;	/* latest now_ms seen; refill is counted from it */
};

struct ratelimit {
	uint64_t rate;		/* units a millisecond adds */
	uint64_t period_ms;	/* units a token costs */
	uint64_t full;		/* rate × period_ms: a full bucket */
	unsigned v6_prefix;

	struct rl_slot *slots;
	uint64_t group_mask;	/* groups - 1 */
	struct rl_bucket *buckets;
	size_t count, max;
	size_t hand;		/* clock hand over buckets[0..count) */
	struct rl_bucket overflow;

	struct ratelimit_stats stats;
};

/* ::ffff:0:0/96 (RFC 4291 2.5.5.2). */
static const unsigned char v4_mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

/* --- keys ---------------------------------------------------------------- */

static void mask_host_bits(unsigned char addr[16], unsigned prefix)
{
	for (unsigned i = prefix / 8; i < 16; i++) {
		unsigned keep = i == prefix / 8 ? prefix % 8 : 0;

		addr[i] &= (unsigned char)(0xff00u >> keep);
	}
}

/* The bucket a printable client address is counted in. Like policy.c's
 * client_parse(): inet_pton() text only, a mapped address is IPv4. */
static void key_make(const struct ratelimit *rl, const char *client_addr,
		     struct rl_key *key_r)
{
	memset(key_r, 0, sizeof(*key_r));
	key_r->kind = RL_KIND_UNPARSABLE;
	if (client_addr == NULL)
		return;
	if (inet_pton(AF_INET, client_addr, key_r->addr + 12) == 1) {
		memcpy(key_r->addr, v4_mapped_prefix, sizeof(v4_mapped_prefix));
		key_r->kind = RL_KIND_V4;
	} else if (inet_pton(AF_INET6, client_addr, key_r->addr) == 1) {
		if (memcmp(key_r->addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
			key_r->kind = RL_KIND_V4;
		} else {
			key_r->kind = RL_KIND_V6;
			mask_host_bits(key_r->addr, rl->v6_prefix);
		}
	} else {
		memset(key_r->addr, 0, sizeof(key_r->addr));
	}
}

/* MurmurHash3's finaliser: every input bit reaches every output bit. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t key_hash(const struct rl_key *key)
{
	uint64_t w0, w1;

	memcpy(&w0, key->addr, sizeof(w0));
	memcpy(&w1, key->addr + 8, sizeof(w1));
	return mix64(w0 ^ mix64(w1 ^ ((uint64_t)key->kind << 56)));
}

static bool bucket_is(const struct rl_bucket *b, const struct rl_key *key)
{
	return b->kind == (uint8_t)key->kind && memcmp(b->addr, key->addr, sizeof(b->addr)) == 0;
}

/* --- tokens -------------------------------------------------------------- */

/* b's units at now_ms. Time that went backwards adds nothing; an interval
 * of a period or more fills the bucket, and a shorter one cannot overflow:
 * elapsed × rate <= period_ms × rate = full. */
static uint64_t bucket_units_at(const struct ratelimit *rl, const struct rl_bucket *b,
				uint64_t now_ms)
{
	uint64_t elapsed, units;

	if (now_ms <= b->last_ms)
		return b->units;
	elapsed = now_ms - b->last_ms;
	if (elapsed >= rl->period_ms)
		return rl->full;
	units = b->units + elapsed * rl->rate;
	return units < rl->full ? units : rl->full;
}

/* Bring b up to now_ms. last_ms never goes back, so an interval is never
 * counted twice when the clock steps back and forth. */
static void bucket_refill(const struct ratelimit *rl, struct rl_bucket *b,
			  uint64_t now_ms)
{
	b->units = bucket_units_at(rl, b, now_ms);
	if (now_ms > b->last_ms)
		b->last_ms = now_ms;
}

static void bucket_reset(const struct ratelimit *rl, struct rl_bucket *b,
			 const struct rl_key *key, uint64_t now_ms)
{
	memcpy(b->addr, key->addr, sizeof(b->addr));
	b->kind = (uint8_t)key->kind;
	b->units = rl->full;
	b->last_ms = now_ms;
}

/* --- table --------------------------------------------------------------- */

struct ratelimit *ratelimit_new(unsigned rate, unsigned period_secs,
				size_t max_entries, unsigned v6_prefix)
{
	struct ratelimit *rl;
	uint64_t period_ms = (uint64_t)period_secs * 1000;
	size_t nslots = RL_GROUP_SLOTS;

	/* Refill adds at most full to at most full: 2 × full must fit. */
	if (rate == 0 || period_secs == 0 || max_entries == 0 ||
	    max_entries > RATELIMIT_ENTRIES_MAX || v6_prefix > RATELIMIT_V6_PREFIX_MAX ||
	    rate > UINT64_MAX / 2 / period_ms)
		return NULL;
	while (nslots < 2 * max_entries)
		nslots *= 2;

	rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		return NULL;
	rl->rate = rate;
	rl->period_ms = period_ms;
	rl->full = rate * period_ms;
	rl->v6_prefix = v6_prefix;
	rl->max = max_entries;
	rl->group_mask = nslots / RL_GROUP_SLOTS - 1;
	rl->overflow.units = rl->full;
	/* nslots × 8 is a multiple of 64, as aligned_alloc() wants. */
	rl->slots = aligned_alloc(RL_GROUP_ALIGN, nslots * sizeof(*rl->slots));
	rl->buckets = calloc(max_entries, sizeof(*rl->buckets));
	if (rl->slots == NULL || rl->buckets == NULL) {
		ratelimit_free(&rl);
		return NULL;
	}
	memset(rl->slots, 0, nslots * sizeof(*rl->slots));
	return rl;
}

void ratelimit_free(struct ratelimit **rl)
{
	if (rl == NULL || *rl == NULL)
		return;
	free((*rl)->slots);
	free((*rl)->buckets);
	free(*rl);
	*rl = NULL;
}

/* Where key is looked for and may be put. */
struct rl_probe {
	struct rl_key key;
	uint32_t tag;
	size_t group;		/* index of the group's first slot */
	size_t free_slot;	/* an empty slot of the group, or SIZE_MAX */
	unsigned work;		/* slots and buckets examined */
};

static void probe_start(const struct ratelimit *rl, const char *client_addr,
			struct rl_probe *p)
{
	uint64_t h;

	key_make(rl, client_addr, &p->key);
	h = key_hash(&p->key);
	p->tag = (uint32_t)h;
	p->group = (size_t)((h >> 32) & rl->group_mask) * RL_GROUP_SLOTS;
	p->free_slot = SIZE_MAX;
	p->work = 0;
}

/* key's bucket, or NULL; a key may sit in any slot of its group, so the
 * whole group is scanned, and the first empty slot is remembered. */
static struct rl_bucket *probe_find(const struct ratelimit *rl, struct rl_probe *p)
{
	for (size_t i = p->group; i < p->group + RL_GROUP_SLOTS; i++) {
		const struct rl_slot *s = &rl->slots[i];
		struct rl_bucket *b;

		p->work++;
		if (s->pos == 0) {
			if (p->free_slot == SIZE_MAX)
				p->free_slot = i;
			continue;
		}
		if (s->tag != p->tag)
			continue;
		b = &rl->buckets[s->pos - 1];
		p->work++;
		if (bucket_is(b, &p->key))
			return b;
	}
	return NULL;
}

/* Drop the bucket at pos: clear its slot, and fill the hole with the last
 * bucket so the array stays dense. */
static void bucket_remove(struct ratelimit *rl, size_t pos, struct rl_probe *p)
{
	struct rl_bucket *b = &rl->buckets[pos];
	size_t last = rl->count - 1;

	rl->slots[b->slot].pos = 0;
	if (pos != last) {
		*b = rl->buckets[last];
		rl->slots[b->slot].pos = (uint32_t)pos + 1;
		p->work++;
	}
	rl->count--;
	if (rl->hand >= rl->count)
		rl->hand = 0;
}

/* A bucket for a key the table does not hold, or NULL when there is no
 * room without forgetting a spent bucket. */
static struct rl_bucket *probe_insert(struct ratelimit *rl, struct rl_probe *p,
				      uint64_t now_ms)
{
	struct rl_bucket *b;
	struct rl_slot *s;

	if (p->free_slot == SIZE_MAX) {
		/* The group is full: replace a full bucket of it in place. */
		for (size_t i = p->group; i < p->group + RL_GROUP_SLOTS; i++) {
			s = &rl->slots[i];
			b = &rl->buckets[s->pos - 1];
			p->work++;
			if (bucket_units_at(rl, b, now_ms) == rl->full) {
				rl->stats.evicted++;
				s->tag = p->tag;
				bucket_reset(rl, b, &p->key, now_ms);
				return b;
			}
		}
		return NULL;
	}
	if (rl->count == rl->max) {
		size_t tries = rl->count < RL_SAMPLE ? rl->count : RL_SAMPLE;
		bool found = false;

		for (size_t i = 0; i < tries && !found; i++) {
			size_t pos = rl->hand;

			rl->hand = (rl->hand + 1) % rl->count;
			p->work++;
			if (bucket_units_at(rl, &rl->buckets[pos], now_ms) == rl->full) {
				bucket_remove(rl, pos, p);
				rl->stats.evicted++;
				found = true;
			}
		}
		if (!found)
			return NULL;
	}
	/* Removing a bucket only empties slots: free_slot is still free. */
	b = &rl->buckets[rl->count];
	b->slot = (uint32_t)p->free_slot;
	bucket_reset(rl, b, &p->key, now_ms);
	rl->slots[p->free_slot] = (struct rl_slot){
		.tag = p->tag, .pos = (uint32_t)rl->count + 1,
	};
	rl->count++;
	return b;
}

static void work_done(struct ratelimit *rl, const struct rl_probe *p)
{
	if (p->work > rl->stats.max_work)
		rl->stats.max_work = p->work;
}

bool ratelimit_take(struct ratelimit *rl, const char *client_addr, uint64_t now_ms)
{
	struct rl_probe p;
	struct rl_bucket *b;

	probe_start(rl, client_addr, &p);
	b = probe_find(rl, &p);
	if (b == NULL)
		b = probe_insert(rl, &p, now_ms);
	if (b == NULL) {
		b = &rl->overflow;
		rl->stats.overflowed++;
	}
	work_done(rl, &p);
	bucket_refill(rl, b, now_ms);
	if (b->units < rl->period_ms)
		return false;
	b->units -= rl->period_ms;
	return true;
}

double ratelimit_tokens(const struct ratelimit *rl, const char *client_addr,
			uint64_t now_ms)
{
	struct rl_probe p;
	const struct rl_bucket *b;

	probe_start(rl, client_addr, &p);
	b = probe_find(rl, &p);
	if (b == NULL)
		return (double)rl->rate;
	return (double)bucket_units_at(rl, b, now_ms) / (double)rl->period_ms;
}

size_t ratelimit_entries(const struct ratelimit *rl)
{
	return rl->count;
}

void ratelimit_get_stats(const struct ratelimit *rl, struct ratelimit_stats *stats_r)
{
	*stats_r = rl->stats;
	stats_r->entries = rl->count;
}
