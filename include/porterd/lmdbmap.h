/*
 * lmdbmap — the layout of a porterd LMDB map, the one contract between
 * porterd-makemap, which writes a map, and the `lmdb` backend, which
 * reads it (porterd-makemap(8) describes it for people).
 *
 * A map is one file (an LMDB environment opened with MDB_NOSUBDIR) with
 * four named databases:
 *   meta       "format" -> LMDBMAP_FORMAT, "entries" -> the entry count,
 *              both decimal text
 *   keys       "records" -> every entry's record, one after another;
 *              "slots" -> a hash table of the records, by key
 *   fullnames  lowercase full name -> locators of the users with that
 *              name (LMDBMAP_NAME_FLAGS)
 *   words      lowercase word of a full name -> locators of the users
 *              whose name has it (LMDBMAP_NAME_FLAGS)
 * Numbers in "records" and "slots" are in the machine's byte order, as
 * LMDB's own are (a map is no more portable than LMDB's files).
 *
 * A record starts at a multiple of LMDBMAP_RECORD_ALIGN octets into
 * "records"; its locator is that offset / LMDBMAP_RECORD_ALIGN + 1, a
 * uint32 (0 is no record). A record is a uint32 value length, a uint16
 * key length, the lowercase key and the value: one kind byte followed by
 *   'u' user     the full name as written, then a NUL; nothing at all
 *                when the user has no name
 *   'l' list     each member, each followed by a NUL, in table order
 *   'f' forward  the target address, then a NUL
 *   'm' moved    the target address, then a NUL
 * then zeros to the next multiple of LMDBMAP_RECORD_ALIGN.
 *
 * "slots" is a struct lmdbmap_slots header, then `buckets` buckets of
 * LMDBMAP_BUCKET_SLOTS slots, each a uint32 tag and a uint32 locator. A
 * key hashes (lmdbmap_hash, over its lowercase octets) to its home bucket
 * and its tag; its slot is the first free one in its home bucket or, the
 * bucket being full, in the next (the last bucket's next is the first),
 * at most max_probe buckets on. Slots fill in order, so a free slot ends
 * a search: a key is in one bucket's line of the memory map, or two when
 * its home bucket is full.
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

#define LMDBMAP_FORMAT 2		/* bumped by any change above */
#define LMDBMAP_DB_META "meta"
#define LMDBMAP_DB_KEYS "keys"
#define LMDBMAP_DB_FULLNAMES "fullnames"
#define LMDBMAP_DB_WORDS "words"
#define LMDBMAP_MAXDBS 4
#define LMDBMAP_META_FORMAT "format"
#define LMDBMAP_META_ENTRIES "entries"
#define LMDBMAP_KEYS_RECORDS "records"
#define LMDBMAP_KEYS_SLOTS "slots"

/* The name indexes' values are locators, sorted as numbers. */
#define LMDBMAP_NAME_FLAGS (MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP)

#define LMDBMAP_KIND_USER 'u'
#define LMDBMAP_KIND_LIST 'l'
#define LMDBMAP_KIND_FORWARD 'f'
#define LMDBMAP_KIND_MOVED 'm'

#define LMDBMAP_RECORD_ALIGN 8
#define LMDBMAP_RECORD_HEAD 6		/* value length, key length */
/* Locators are uint32 in units of LMDBMAP_RECORD_ALIGN. */
#define LMDBMAP_RECORDS_MAX ((uint64_t)UINT32_MAX * LMDBMAP_RECORD_ALIGN - 1)

#define LMDBMAP_BUCKET_SLOTS 8
#define LMDBMAP_SLOT_SIZE 8		/* tag, locator */
#define LMDBMAP_BUCKET_SIZE (LMDBMAP_BUCKET_SLOTS * LMDBMAP_SLOT_SIZE)
/* Keys per bucket, on average: half full, a missing key's search ends
 * in its home bucket but for one in twenty. */
#define LMDBMAP_BUCKET_LOAD 4

/*
 * The head of "slots". It is 48 octets so that, LMDB storing a large
 * value 16 octets into its first page, every bucket is one 64-octet line
 * of the memory map; nothing depends on it but speed.
 */
struct lmdbmap_slots {
	uint64_t buckets;	/* 1 .. UINT32_MAX */
	uint64_t entries;	/* keys, as meta's "entries" */
	uint64_t max_probe;	/* farthest a key is past its home bucket */
	uint64_t zero[3];
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
