/*
 * lmdbmap — the layout of a porterd LMDB map, the one contract between
 * porterd-makemap, which writes a map, and the `lmdb` backend, which
 * reads it (porterd-makemap(8) describes it for people).
 *
 * A map is one file (an LMDB environment opened with MDB_NOSUBDIR) with
 * four named databases:
 *   meta       "format" -> LMDBMAP_FORMAT, "entries" -> the entry count,
 *              both decimal text
 *   keys       "dict" -> a hashed dictionary (below): each entry's
 *              lowercase key -> its value
 *   fullnames  "dict" -> a hashed dictionary: each lowercase full name
 *              -> the locators of the users with that name
 *   words      "dict" -> a hashed dictionary: each lowercase word of a
 *              full name -> the locators of the users whose name has it
 * Numbers in a dictionary are in the machine's byte order, as LMDB's own
 * are (a map is no more portable than LMDB's files).
 *
 * A hashed dictionary is a struct lmdbmap_dict head, then its region:
 * `buckets` buckets of LMDBMAP_BUCKET_SIZE octets, then an overflow area
 * of `overflow` octets. A bucket is one line of LMDBMAP_BUCKET_SLOTS
 * slots, each a uint32 tag and a uint32 locator (0: free), then an
 * inline area of LMDBMAP_BUCKET_INLINE octets holding records.
 *
 * A record starts at a multiple of LMDBMAP_RECORD_ALIGN octets into the
 * region; its locator is that offset / LMDBMAP_RECORD_ALIGN + 1, a
 * uint32, the same wherever in the region the record lies. A record is
 * a uint32 value length, a uint16 key length, the lowercase key and the
 * value, then zeros to the next multiple of LMDBMAP_RECORD_ALIGN. In
 * "keys" the value is one kind byte followed by
 *   'u' user     the full name as written, then a NUL; nothing at all
 *                when the user has no name
 *   'l' list     each member, each followed by a NUL, in table order
 *   'f' forward  the target address, then a NUL
 *   'm' moved    the target address, then a NUL
 * and in "fullnames" and "words" the uint32 locators, in "keys", of the
 * users, sorted as numbers.
 *
 * A key hashes (lmdbmap_hash, over its lowercase octets) to its home
 * bucket and its tag; its slot is the first free one in its home bucket
 * or, the bucket being full, in the next (the last bucket's next is the
 * first), at most max_probe buckets on. Slots fill in entry order, so a
 * free slot ends a search. Each bucket's records go into its inline
 * area in slot order while they fit; one that does not goes to the
 * overflow area. So a key's bucket is all a lookup reads, as a rule:
 * four lines of one page, fetched at once, one trip to memory. That is
 * format 3; format 2 kept the slots and the records apart, two trips
 * one after the other, and its name indexes were B-trees, deeper as a
 * map grew.
 *
 * Index keys longer than LMDBMAP_INDEX_KEY_MAX are cut to it: a reader
 * whose query is that long compares the full names it finds.
 *
 * A map is never written in place: makemap builds a new file and renames
 * it over the old one, so a reader never shares a file with a writer.
 */
#ifndef PORTERD_LMDBMAP_H
#define PORTERD_LMDBMAP_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#define LMDBMAP_FORMAT 3		/* bumped by any change above */
#define LMDBMAP_DB_META "meta"
#define LMDBMAP_DB_KEYS "keys"
#define LMDBMAP_DB_FULLNAMES "fullnames"
#define LMDBMAP_DB_WORDS "words"
#define LMDBMAP_MAXDBS 4
#define LMDBMAP_META_FORMAT "format"
#define LMDBMAP_META_ENTRIES "entries"
#define LMDBMAP_DICT "dict"		/* the one value of keys, fullnames, words */

#define LMDBMAP_KIND_USER 'u'
#define LMDBMAP_KIND_LIST 'l'
#define LMDBMAP_KIND_FORWARD 'f'
#define LMDBMAP_KIND_MOVED 'm'

#define LMDBMAP_RECORD_ALIGN 8
#define LMDBMAP_RECORD_HEAD 6		/* value length, key length */
#define LMDBMAP_LOCATOR_SIZE 4		/* a name index's value is these */
/* Locators are uint32 in units of LMDBMAP_RECORD_ALIGN. */
#define LMDBMAP_REGION_MAX ((uint64_t)UINT32_MAX * LMDBMAP_RECORD_ALIGN - 1)

#define LMDBMAP_LINE 64			/* a cache line */
#define LMDBMAP_BUCKET_SLOTS 8
#define LMDBMAP_SLOT_SIZE 8		/* tag, locator */
#define LMDBMAP_BUCKET_SIZE (4 * LMDBMAP_LINE)
#define LMDBMAP_BUCKET_INLINE (LMDBMAP_BUCKET_SIZE - \
			       LMDBMAP_BUCKET_SLOTS * LMDBMAP_SLOT_SIZE)
/* The buckets makemap gives a dictionary: one for every
 * LMDBMAP_BUCKET_LOAD keys at most, so that a missing key's search ends
 * in its home bucket but for one in twenty; more when the records that
 * could lie inline average more than LMDBMAP_BUCKET_FILL octets a
 * bucket, so that most of them do (a bucket's count of keys varies, and
 * a full inline area sends the next record to the overflow area). */
#define LMDBMAP_BUCKET_LOAD 4
#define LMDBMAP_BUCKET_FILL 128

/*
 * The head of a dictionary. It is 240 octets so that, LMDB storing a
 * large value 16 octets into its first page, every bucket starts a
 * multiple of LMDBMAP_BUCKET_SIZE into the memory map: it is four whole
 * cache lines of one page (one TLB entry). Nothing depends on it but
 * speed.
 */
struct lmdbmap_dict {
	uint64_t buckets;	/* 1 .. UINT32_MAX */
	uint64_t entries;	/* keys */
	uint64_t max_probe;	/* farthest a key is past its home bucket */
	uint64_t overflow;	/* octets after the buckets */
	uint64_t zero[26];
};

/* Octets 0 .. 7 of p as a little-endian number: the hash is the same
 * whatever the machine. */
static inline uint64_t lmdbmap_le64(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
	       (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	       (uint64_t)p[7] << 56;
}

/*
 * The hash of a key's len lowercase octets: h = 0x9e3779b97f4a7c15 xor
 * len; for each 8 octets (the last zero-padded), as a little-endian
 * number w: h = (h xor w) * 0xff51afd7ed558ccd, h = h xor (h >> 32);
 * last, MurmurHash3's 64-bit finalizer. It is part of the format: a
 * change is a new LMDBMAP_FORMAT.
 */
static inline uint64_t lmdbmap_hash(const char *key, size_t len)
{
	const unsigned char *p = (const unsigned char *)key;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
	unsigned char tail[8] = { 0 };

	for (; len >= 8; p += 8, len -= 8) {
		h = (h ^ lmdbmap_le64(p)) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	if (len > 0) {
		for (size_t i = 0; i < len; i++)
			tail[i] = p[i];
		h = (h ^ lmdbmap_le64(tail)) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* A hash's home bucket, of buckets (at most UINT32_MAX): its high half
 * scaled to the count, with no division. */
static inline uint64_t lmdbmap_bucket(uint64_t hash, uint64_t buckets)
{
	return ((hash >> 32) * buckets) >> 32;
}

/* The tag a slot holds: the low half, which the bucket does not use. */
static inline uint32_t lmdbmap_tag(uint64_t hash)
{
	return (uint32_t)hash;
}

/* Under LMDB's default key limit (511 octets), for keys and dup values. */
#define LMDBMAP_INDEX_KEY_MAX 500

#endif
