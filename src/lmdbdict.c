/*
 * lmdbdict — a porterd map's hashed dictionary, read and written (the
 * layout is in lmdbmap.h).
 *
 * Why this shape: a lookup in a map of millions of keys is a trip to
 * memory for each line it reads that is not in the CPU caches, and a
 * trip that depends on the one before (a slot naming a record elsewhere)
 * costs another whole trip. Here a key's bucket holds its slots and, as
 * a rule, its record too: the reader asks for all four lines of the
 * bucket at once, and the record's line is on its way while the tags are
 * compared. One trip, whatever the size of the map.
 *
 * The reader must never read outside the dictionary, whatever the map
 * holds: every locator and length is checked before it is followed. The
 * writer must never place a record where a locator cannot reach it.
 */
#include "porterd/lmdbdict.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/lmdbmap.h"

/* ---- reading ---- */

bool lmdbdict_open(struct lmdbdict *d, const void *data, size_t size,
		   size_t key_max, char *why, size_t whysize)
{
	struct lmdbmap_dict head;
	uint64_t room;

	*d = (struct lmdbdict){ 0 };
	if (size < sizeof(head) + LMDBMAP_BUCKET_SIZE) {
		snprintf(why, whysize, "%zu octets, too few for one bucket", size);
		return false;
	}
	memcpy(&head, data, sizeof(head));
	room = size - sizeof(head);
	if (head.buckets == 0 || head.buckets > UINT32_MAX ||
	    head.buckets > room / LMDBMAP_BUCKET_SIZE ||
	    head.overflow != room - head.buckets * LMDBMAP_BUCKET_SIZE) {
		snprintf(why, whysize, "%zu octets, not the %" PRIu64
			 " buckets and %" PRIu64 " octets after them its head says",
			 size, head.buckets, head.overflow);
		return false;
	}
	if (room > LMDBMAP_REGION_MAX) {
		snprintf(why, whysize, "%zu octets, more than locators reach", size);
		return false;
	}
	if (head.max_probe >= head.buckets) {
		snprintf(why, whysize, "keys %" PRIu64 " buckets past their home, "
			 "of %" PRIu64, head.max_probe, head.buckets);
		return false;
	}
	*d = (struct lmdbdict){ .region = (const unsigned char *)data + sizeof(head),
				.region_size = room, .buckets = head.buckets,
				.max_probe = head.max_probe,
				.entries = head.entries, .key_max = key_max };
	return true;
}

enum lmdbdict_status lmdbdict_record_at(const struct lmdbdict *d, uint32_t loc,
					struct lmdbdict_record *r)
{
	uint64_t off = ((uint64_t)loc - 1) * LMDBMAP_RECORD_ALIGN, room;
	const unsigned char *p;
	uint32_t vlen;
	uint16_t klen;

	if (loc == 0 || off > d->region_size ||
	    d->region_size - off < LMDBMAP_RECORD_HEAD)
		return LMDBDICT_DAMAGED;
	p = d->region + off;
	room = d->region_size - off - LMDBMAP_RECORD_HEAD;
	memcpy(&vlen, p, sizeof(vlen));
	memcpy(&klen, p + sizeof(vlen), sizeof(klen));
	if (klen == 0 || klen > d->key_max || klen > room || vlen > room - klen)
		return LMDBDICT_DAMAGED;
	p += LMDBMAP_RECORD_HEAD;
	*r = (struct lmdbdict_record){ .key = (const char *)p, .keylen = klen,
				       .value = (const char *)p + klen,
				       .valuelen = vlen };
	return LMDBDICT_FOUND;
}

/* All four lines of a bucket asked for at once: the record the slots
 * name is, as a rule, in one of them, and arrives with the slots. */
static inline void bucket_prefetch(const unsigned char *b)
{
	__builtin_prefetch(b);
	__builtin_prefetch(b + LMDBMAP_LINE);
	__builtin_prefetch(b + 2 * LMDBMAP_LINE);
	__builtin_prefetch(b + 3 * LMDBMAP_LINE);
}

/*
 * A slot's tag is the half of the hash its bucket did not use, so a
 * record is read for one key in four thousand million that is not its
 * own. Slots fill in order: a free one ends the search.
 */
enum lmdbdict_status lmdbdict_find(const struct lmdbdict *d, const char *key,
				   size_t len, struct lmdbdict_record *r)
{
	uint64_t h = lmdbmap_hash(key, len);
	uint64_t at = lmdbmap_bucket(h, d->buckets);
	uint32_t tag = lmdbmap_tag(h);
	const unsigned char *b = d->region + at * LMDBMAP_BUCKET_SIZE;

	bucket_prefetch(b);
	for (uint64_t dist = 0;;) {
		for (int i = 0; i < LMDBMAP_BUCKET_SLOTS; i++) {
			const unsigned char *slot = b + i * LMDBMAP_SLOT_SIZE;
			enum lmdbdict_status st;
			uint32_t t, loc;

			memcpy(&t, slot, sizeof(t));
			memcpy(&loc, slot + sizeof(t), sizeof(loc));
			if (loc == 0)
				return LMDBDICT_NOTFOUND;
			if (t != tag)
				continue;
			st = lmdbdict_record_at(d, loc, r);
			if (st != LMDBDICT_FOUND)
				return st;
			if (r->keylen == len && memcmp(r->key, key, len) == 0)
				return LMDBDICT_FOUND;
		}
		if (++dist > d->max_probe)
			return LMDBDICT_NOTFOUND;
		at = at + 1 == d->buckets ? 0 : at + 1;
		b = d->region + at * LMDBMAP_BUCKET_SIZE;
		bucket_prefetch(b);
	}
}

/* ---- writing ---- */

static uint64_t record_size(size_t keylen, size_t valuelen)
{
	uint64_t n = (uint64_t)LMDBMAP_RECORD_HEAD + keylen + valuelen;

	return (n + LMDBMAP_RECORD_ALIGN - 1) / LMDBMAP_RECORD_ALIGN *
	       LMDBMAP_RECORD_ALIGN;
}

/* Each record's size, and the octets of those that could lie inline. */
static int plan_sizes(struct lmdbdict_plan *p, const struct lmdbdict_source *s,
		      uint64_t *inline_r)
{
	*inline_r = 0;
	for (size_t i = 0; i < s->n; i++) {
		size_t klen, vlen = s->value_size(s->arg, i);
		uint64_t size;

		s->key(s->arg, i, &klen);
		if (klen == 0 || klen > UINT16_MAX)
			return EINVAL;	/* the sources never give one */
		if (vlen > UINT32_MAX)
			return EFBIG;
		size = record_size(klen, vlen);
		if (size > UINT32_MAX)
			return EFBIG;
		p->rsize[i] = (uint32_t)size;
		if (size <= LMDBMAP_BUCKET_INLINE)
			*inline_r += size;
	}
	return 0;
}

static uint64_t buckets_for(size_t n, uint64_t inline_octets, uint64_t want)
{
	uint64_t least = ((uint64_t)n + LMDBMAP_BUCKET_SLOTS - 1) /
			 LMDBMAP_BUCKET_SLOTS;
	uint64_t by_fill = (inline_octets + LMDBMAP_BUCKET_FILL - 1) /
			   LMDBMAP_BUCKET_FILL;

	if (want == 0) {
		want = ((uint64_t)n + LMDBMAP_BUCKET_LOAD - 1) / LMDBMAP_BUCKET_LOAD;
		if (want < by_fill)
			want = by_fill;
	}
	if (want < least)
		want = least;
	if (want > UINT32_MAX)
		want = UINT32_MAX;	/* lmdbmap_bucket's bound */
	return want > 0 ? want : 1;
}

/* Each entry, in order, into the first free slot from its home bucket
 * on: there are slots for all, so one is found. */
static int plan_slots(struct lmdbdict_plan *p, const struct lmdbdict_source *s)
{
	unsigned char *taken = calloc(p->buckets, 1);

	if (taken == NULL)
		return ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		size_t len;
		const char *key = s->key(s->arg, i, &len);
		uint64_t at = lmdbmap_bucket(lmdbmap_hash(key, len), p->buckets);
		uint64_t dist = 0;

		while (taken[at] == LMDBMAP_BUCKET_SLOTS) {
			at = at + 1 == p->buckets ? 0 : at + 1;
			dist++;
		}
		p->at_slot[at * LMDBMAP_BUCKET_SLOTS + taken[at]++] = (uint32_t)i + 1;
		if (dist > p->max_probe)
			p->max_probe = dist;
	}
	for (uint64_t b = 0; b < p->buckets; b++)
		p->full_buckets += taken[b] == LMDBMAP_BUCKET_SLOTS;
	free(taken);
	return 0;
}

/* Each bucket's records inline in slot order while they fit, the rest
 * in the overflow area, bucket after bucket. */
static int plan_records(struct lmdbdict_plan *p)
{
	uint64_t end = p->buckets * LMDBMAP_BUCKET_SIZE;

	for (uint64_t b = 0; b < p->buckets; b++) {
		uint64_t used = 0;

		for (int k = 0; k < LMDBMAP_BUCKET_SLOTS; k++) {
			uint32_t e = p->at_slot[b * LMDBMAP_BUCKET_SLOTS + (uint64_t)k];
			uint64_t off;

			if (e-- == 0)
				break;
			if (p->rsize[e] <= LMDBMAP_BUCKET_INLINE - used) {
				off = b * LMDBMAP_BUCKET_SIZE + LMDBMAP_BUCKET_SLOTS *
				      LMDBMAP_SLOT_SIZE + used;
				used += p->rsize[e];
				p->inline_records++;
			} else {
				off = end + p->overflow;
				p->overflow += p->rsize[e];
				if (end + p->overflow > LMDBMAP_REGION_MAX)
					return EFBIG;
			}
			p->loc[e] = (uint32_t)(off / LMDBMAP_RECORD_ALIGN + 1);
		}
	}
	return 0;
}

int lmdbdict_plan(struct lmdbdict_plan *p, const struct lmdbdict_source *s,
		  uint64_t buckets)
{
	size_t n = s->n > 0 ? s->n : 1;
	uint64_t inline_octets;
	int rc;

	*p = (struct lmdbdict_plan){ .entries = s->n };
	if (s->n >= UINT32_MAX)
		return EFBIG;	/* slots hold an entry + 1 in a uint32 */
	p->loc = calloc(n, sizeof(*p->loc));
	p->rsize = calloc(n, sizeof(*p->rsize));
	if (p->loc == NULL || p->rsize == NULL)
		return ENOMEM;
	rc = plan_sizes(p, s, &inline_octets);
	if (rc != 0)
		return rc;
	p->buckets = buckets_for(s->n, inline_octets, buckets);
	if (p->buckets * LMDBMAP_BUCKET_SIZE > LMDBMAP_REGION_MAX)
		return EFBIG;
	p->at_slot = calloc(p->buckets * LMDBMAP_BUCKET_SLOTS, sizeof(*p->at_slot));
	if (p->at_slot == NULL)
		return ENOMEM;
	rc = plan_slots(p, s);
	return rc != 0 ? rc : plan_records(p);
}

uint64_t lmdbdict_size(const struct lmdbdict_plan *p)
{
	return sizeof(struct lmdbmap_dict) + p->buckets * LMDBMAP_BUCKET_SIZE +
	       p->overflow;
}

/* Entry e's slot (tag, locator) at slot and its record where its
 * locator says. */
static void entry_write(const struct lmdbdict_plan *p,
			const struct lmdbdict_source *s, uint32_t e,
			unsigned char *region, unsigned char *slot)
{
	size_t len;
	const char *key = s->key(s->arg, e, &len);
	uint32_t tag = lmdbmap_tag(lmdbmap_hash(key, len));
	unsigned char *rec = region + ((uint64_t)p->loc[e] - 1) *
				      LMDBMAP_RECORD_ALIGN;
	uint32_t vlen = (uint32_t)s->value_size(s->arg, e);
	uint16_t klen = (uint16_t)len;

	memcpy(slot, &tag, sizeof(tag));
	memcpy(slot + sizeof(tag), &p->loc[e], sizeof(p->loc[e]));
	memcpy(rec, &vlen, sizeof(vlen));
	memcpy(rec + sizeof(vlen), &klen, sizeof(klen));
	memcpy(rec + LMDBMAP_RECORD_HEAD, key, len);
	s->value_write(s->arg, e, rec + LMDBMAP_RECORD_HEAD + len);
}

void lmdbdict_write(const struct lmdbdict_plan *p,
		    const struct lmdbdict_source *s, unsigned char *out)
{
	struct lmdbmap_dict head = { .buckets = p->buckets, .entries = p->entries,
				     .max_probe = p->max_probe,
				     .overflow = p->overflow };
	unsigned char *region = out + sizeof(head);

	/* Free slots, padding and unused inline room are zeros. */
	memset(out, 0, lmdbdict_size(p));
	memcpy(out, &head, sizeof(head));
	for (uint64_t b = 0; b < p->buckets; b++) {
		unsigned char *bucket = region + b * LMDBMAP_BUCKET_SIZE;

		for (int k = 0; k < LMDBMAP_BUCKET_SLOTS; k++) {
			uint32_t e = p->at_slot[b * LMDBMAP_BUCKET_SLOTS + (uint64_t)k];

			if (e == 0)
				break;
			entry_write(p, s, e - 1, region,
				    bucket + k * LMDBMAP_SLOT_SIZE);
		}
	}
}

void lmdbdict_plan_free(struct lmdbdict_plan *p)
{
	free(p->loc);
	free(p->at_slot);
	free(p->rsize);
	*p = (struct lmdbdict_plan){ 0 };
}
