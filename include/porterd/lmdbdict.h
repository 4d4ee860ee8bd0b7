/*
 * lmdbdict — the hashed dictionary of a porterd LMDB map (its layout is
 * in lmdbmap.h): hash -> bucket -> slots -> record. One reader, for the
 * `lmdb` backend's keys and name indexes alike, and one writer, for
 * porterd-makemap's. A dictionary is one LMDB value; neither side calls
 * LMDB.
 *
 * The reader trusts nothing it reads from the map: the head is checked
 * when a dictionary is opened, and each locator and length when it is
 * followed, so that a damaged map is an error, never a read outside it.
 */
#ifndef PORTERD_LMDBDICT_H
#define PORTERD_LMDBDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- reading ---- */

/* A dictionary in memory (the map), as lmdbdict_open found it. */
struct lmdbdict {
	const unsigned char *region;	/* bucket 0 */
	uint64_t region_size;		/* the buckets and the overflow */
	uint64_t buckets, max_probe, entries;
	size_t key_max;			/* a longer key is a damaged record */
};

/* One record, pointing into the map. */
struct lmdbdict_record {
	const char *key;
	size_t keylen;
	const char *value;
	size_t valuelen;
};

enum lmdbdict_status {
	LMDBDICT_FOUND,
	LMDBDICT_NOTFOUND,
	LMDBDICT_DAMAGED,	/* a locator or a length the layout forbids */
};

/*
 * Take the size octets at data as a dictionary whose keys are at most
 * key_max octets. False when its head does not add up, with what is
 * wrong in why ("112 octets, not the 496 its head says").
 */
bool lmdbdict_open(struct lmdbdict *d, const void *data, size_t size,
		   size_t key_max, char *why, size_t whysize);

/* The record of key (len lowercase octets): FOUND with it in *r,
 * NOTFOUND, or DAMAGED. */
enum lmdbdict_status lmdbdict_find(const struct lmdbdict *d, const char *key,
				   size_t len, struct lmdbdict_record *r);

/* The record a locator names: FOUND or DAMAGED. */
enum lmdbdict_status lmdbdict_record_at(const struct lmdbdict *d, uint32_t loc,
					struct lmdbdict_record *r);

/* ---- writing ---- */

/*
 * The entries of a dictionary to write, as the writer asks for them: n
 * of them, each a key (lowercase, 1 .. 65535 octets, no two alike) and
 * a value. key() may return a buffer of arg's that its next call
 * reuses; value_write() writes exactly value_size() octets.
 */
struct lmdbdict_source {
	size_t n;
	void *arg;
	const char *(*key)(void *arg, size_t i, size_t *len_r);
	size_t (*value_size)(void *arg, size_t i);
	void (*value_write)(void *arg, size_t i, unsigned char *out);
};

/* Where everything of a dictionary goes, before it is written. */
struct lmdbdict_plan {
	uint32_t *loc;		/* each entry's locator */
	uint32_t *at_slot;	/* each slot's entry + 1, 0 for a free one */
	uint32_t *rsize;	/* each entry's record, in octets */
	uint64_t buckets, overflow, max_probe;
	size_t entries;
	/* What a lookup will meet, for makemap -v and the tests. */
	size_t full_buckets;	/* a missing key's search goes on past */
	size_t inline_records;	/* in the bucket of their slot */
};

/*
 * Plan the dictionary of s: buckets of them (0: as many as lmdbmap.h's
 * LMDBMAP_BUCKET_LOAD and LMDBMAP_BUCKET_FILL ask), never fewer than
 * its slots need. 0, or ENOMEM, or EFBIG when locators cannot reach it
 * all; the plan is to be freed either way.
 */
int lmdbdict_plan(struct lmdbdict_plan *p, const struct lmdbdict_source *s,
		  uint64_t buckets);

/* The octets of the planned dictionary, its head included. */
uint64_t lmdbdict_size(const struct lmdbdict_plan *p);

/* Write the planned dictionary of s at out (lmdbdict_size octets). */
void lmdbdict_write(const struct lmdbdict_plan *p,
		    const struct lmdbdict_source *s, unsigned char *out);

void lmdbdict_plan_free(struct lmdbdict_plan *p);

#endif
