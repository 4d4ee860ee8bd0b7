/*
 * table — the `table` directory backend: a text file of keys, each a user,
 * a list, a forward or a moved address, read once into memory and answered
 * from hash indexes, synchronously.
 *
 * It must never guess: a line it cannot read exactly fails the load with a
 * message naming the file and line, never an entry dropped or half-read.
 * A lookup must never allocate, block, or scan the table: keys, full names
 * and name words each have an open-addressing index built at load.
 *
 * The file is parsed in place: tokens are NUL-terminated and lowercased in
 * the buffer it was read into, a user's full name is compacted there, and
 * every string an answer carries points into that buffer, or into the key
 * index's copy of it, until close.
 */
#include "porterd/backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/command.h"
#include "porterd/namequery.h"
#include "porterd/strutil.h"
#include "porterd/table.h"
#include "porterd/textscan.h"

#define TABLE_PATH_MAX 4096		/* resolved path octets, with NUL */
#define TABLE_KEY_MAX ADDRESS_PATH_MAX	/* key, member or target octets */
#define TABLE_ENTRIES_MAX (UINT32_MAX - 1)
/*
 * Indexes are built in batches: hash a batch, prefetch its slots, then
 * insert. The probes of a large table are cache misses, and overlapping
 * them is much of the load time saved.
 */
#define TABLE_BATCH 16
#define TABLE_KINDS "expected user, list, forward or moved"

enum entry_kind { KIND_USER, KIND_LIST, KIND_FORWARD, KIND_MOVED, KIND__COUNT };

static const char *const kind_names[KIND__COUNT] = {
	[KIND_USER] = "user",
	[KIND_LIST] = "list",
	[KIND_FORWARD] = "forward",
	[KIND_MOVED] = "moved",
};

struct entry {
	const char *key;	/* lowercase, NUL-terminated */
	const char *value;	/* user: full name or NULL; else the target */
	uint32_t line;		/* where it starts, for duplicate keys */
	uint32_t first;		/* list: members[first .. + nmembers) */
	uint32_t nmembers;
	uint16_t keylen;
	uint8_t kind;
};

/* A slot of the full-name index: one user (index + 1) with this full
 * name, 0 when free, and how many users have it. */
struct name_slot {
	uint32_t hash;
	uint32_t entry;
	uint32_t count;
};

/*
 * A slot of the word index: the word (as it first appears in a name) and
 * its chain of postings; head 0 when free. Keeping the word here, not
 * behind a posting, spares two cache misses per probe.
 */
struct word_slot {
	const char *text;
	uint32_t len;
	uint32_t hash;
	uint32_t head;		/* first posting (index + 1) */
	uint32_t count;		/* postings, to walk the rarest word */
};

/* One occurrence of a word in a full name, at value + off. */
struct posting {
	uint32_t entry;
	uint32_t next;		/* next posting (index + 1), same word */
	uint32_t off;
};

struct backend {
	char *path;		/* resolved, for messages */
	char *buf;		/* the file; all strings below point here */
	struct entry *entries;
	size_t nentries;
	size_t entries_cap;	/* an upper bound counted before parsing */
	const char **members;
	size_t nmembers;
	size_t members_cap;
	unsigned char *key_buckets;	/* the key index, within key_mem */
	void *key_mem;
	size_t key_nbuckets;
	uint32_t *key_homes;	/* per bucket, the keys whose home it is */
	struct name_slot *names;
	size_t names_mask;
	struct word_slot *words;
	size_t words_mask;
	size_t nwords;		/* distinct words, to know when to grow */
	struct posting *postings;
	size_t npostings;
};

/* The entry continuation lines add to, and what they need to know. */
struct parser {
	struct backend *be;
	char *err;
	size_t errsize;
	uint32_t line;
	struct entry *open;
	char *name_end;		/* user: where its name ends so far */
	unsigned naddrs;	/* forward, moved: addresses seen */
};

/* Free-text query words, pointing into the caller's string. */
static void table_close(struct backend **be_p);

/*
 * FNV-1a folds case; a finaliser spreads its weak low bits. The 32 bits
 * kept both place a key (hash & mask) and screen it before a compare.
 */
static uint32_t table_hash(const char *s, size_t len)
{
	uint64_t h = str_hash_nocase(s, len);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (uint32_t)h;
}

/* The big arrays are written at random while a large table is indexed
 * and read at random by every lookup: huge pages (a hint) save most of
 * the page faults and TLB misses that costs. */
static void *table_calloc(size_t n, size_t size)
{
	void *p = calloc(n > 0 ? n : 1, size);

	if (p != NULL)
		mem_hint_huge(p, n * size);
	return p;
}

/* A power of two at least twice n, so every probe sequence ends. */
static size_t index_capacity(size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap *= 2;
	return cap;
}

/*
 * Why an address-like token (key, list member, target) is bad, or NULL.
 * A target must hold an '@' and no angle brackets (those were stripped).
 */
static const char *address_check(const char *s, size_t len, bool target)
{
	const char *at = NULL;

	if (len == 0)
		return "empty";
	if (len > TABLE_KEY_MAX)
		return "longer than 256 octets";
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '@' && at != NULL)
			return "more than one '@'";
		if (s[i] == '@')
			at = s + i;
		if (target && (s[i] == '<' || s[i] == '>'))
			return "unbalanced '<' or '>'";
	}
	if (at == NULL)
		return target ? "missing '@'" : NULL;
	if (at == s)
		return "empty local part";
	if (at == s + len - 1)
		return "empty domain";
	return NULL;
}

static int kind_parse(const char *s, size_t len)
{
	for (int k = 0; k < KIND__COUNT; k++)
		if (str_eq_nocase(s, len, kind_names[k], strlen(kind_names[k])))
			return k;
	return -1;
}

/* ---- messages ---- */

static int parser_fail_at(struct parser *p, uint32_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "PATH:LINE: message"; always returns -1 so callers can return it. */
static int parser_fail_at(struct parser *p, uint32_t line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_error_at(p->err, p->errsize, p->be->path, line, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the key index ---- */

/*
 * A bucket of the key index is two cache lines holding whole records,
 * each a key and the string its answer carries (a user's full name, a
 * target) copied at load: a lookup reads its home bucket, both lines
 * fetched at once, and nothing else. Between a server's lookups its
 * system calls leave the caches cold, and each dependent miss is a trip
 * to memory: an answer reached through a slot, then the entry, then the
 * key's text in the file would cost three. A record that does not fit a
 * bucket (a long key or name) or finds no room near its home, and every
 * list, whose answer is its members anyway, is stored far: the entry's
 * index, answered from the entry.
 *
 * A bucket starts with its record count, the overflow mark and the octets
 * its records take, then one fingerprint and offset per record, all in
 * the first line: a key that is not there costs that line alone. The
 * records follow the slots, moved along as a slot is added, so the first
 * ones share the slots' line. A record goes to the first bucket from its
 * home with room for it (linear probing by buckets), and every bucket it
 * passes is marked, so a lookup reads on only past buckets that
 * overflowed. Buckets are sized to be about half full, so overflows are
 * few, and a bucket with room for a far record is always found.
 *
 * Record: its kind and flags, then the entry's index (far), or the key's
 * length, the key and a NUL, and the value and a NUL if any.
 *
 * Beside the buckets, a word per bucket has one bit set (by five more bits
 * of the hash) for each key whose home it is: a thirty-second of the
 * buckets' size, it stays in the caches, so that most keys that are not
 * there (a harvest, a stream of unknown recipients) are answered without
 * waiting for their bucket from memory.
 */
#define KEY_BUCKET 128			/* octets: two cache lines */
#define KEY_BUCKET_HEAD 2		/* count and mark, record octets */
#define KEY_BUCKET_COUNT 0x7f
#define KEY_BUCKET_OVERFLOW 0x80
#define KEY_SLOT 2			/* fingerprint, record offset */
#define KEY_FILL_PERCENT 50		/* of the octets buckets hold */
#define KEY_REC_HEAD 2			/* flags, key length */
#define KEY_REC_FAR_SIZE 5		/* flags, entry index */
#define KEY_REC_MAX (KEY_BUCKET - KEY_BUCKET_HEAD - KEY_SLOT)
#define KEY_REC_KIND 0x03		/* flags: the entry's kind */
#define KEY_REC_FAR 0x04		/* flags: answered from the entry */
#define KEY_REC_VALUE 0x08		/* flags: a value follows the key */
#define KEY_NEAR_PROBES 8		/* buckets tried before a record goes far:
					 * each is a dependent miss to find it */

_Static_assert(KIND__COUNT - 1 <= KEY_REC_KIND, "a kind fits its flag bits");

/* A record in the key index, what a lookup by key finds. */
typedef const unsigned char *key_record;

/*
 * The key index's own hash, all 64 bits mixed (murmur3's finaliser): the
 * high half places a key, the low octet screens it, independently.
 */
static uint64_t key_hash(const char *s, size_t len)
{
	uint64_t h = str_hash_nocase(s, len);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* The home bucket: the high half of h scaled to the bucket count. */
static size_t key_home(const struct backend *be, uint64_t h)
{
	return (size_t)(((h >> 32) * (uint64_t)be->key_nbuckets) >> 32);
}

static unsigned char *key_bucket(const struct backend *be, size_t i)
{
	return be->key_buckets + i * KEY_BUCKET;
}

static size_t key_next(const struct backend *be, size_t i)
{
	return i + 1 == be->key_nbuckets ? 0 : i + 1;
}

/* Octets free in bucket b, for records and their slots. */
static size_t key_free(const unsigned char *b)
{
	return KEY_BUCKET - KEY_BUCKET_HEAD - b[1] -
	       KEY_SLOT * (size_t)(b[0] & KEY_BUCKET_COUNT);
}

static uint32_t key_rec_entry(key_record r)
{
	uint32_t idx;

	memcpy(&idx, r + 1, sizeof(idx));
	return idx;
}

/*
 * Octets of a near record (valsize: the value's octets with its NUL, 0
 * for none); 0 when it must be far: a list, or too long for a bucket.
 */
static size_t key_rec_size(size_t keylen, int kind, size_t valsize)
{
	size_t n = KEY_REC_HEAD + keylen + 1 + valsize;

	return kind == KIND_LIST || n > KEY_REC_MAX ? 0 : n;
}

/* What the index reserves for a record and its slot: at least what they
 * take, near or far, however much shorter the value turns out. */
static size_t key_rec_budget(size_t keylen, size_t valsize)
{
	size_t n = KEY_REC_HEAD + keylen + 1 + valsize;

	n = n < KEY_REC_FAR_SIZE ? KEY_REC_FAR_SIZE :
	    n > KEY_REC_MAX ? KEY_REC_MAX : n;
	return KEY_SLOT + n;
}

/* Buckets for records and slots taking up to budget octets in all. */
static int keys_alloc(struct backend *be, size_t budget)
{
	size_t room = (KEY_BUCKET - KEY_BUCKET_HEAD) * KEY_FILL_PERCENT / 100;
	size_t n = budget / room + 1;

	if (n > UINT32_MAX)
		return ENOMEM;
	/* One bucket more, to align them to the cache lines. */
	be->key_mem = table_calloc(n + 1, KEY_BUCKET);
	if (be->key_mem == NULL)
		return ENOMEM;
	be->key_buckets = (unsigned char *)(((uintptr_t)be->key_mem +
		KEY_BUCKET - 1) & ~(uintptr_t)(KEY_BUCKET - 1));
	be->key_nbuckets = n;
	be->key_homes = table_calloc(n, sizeof(*be->key_homes));
	return be->key_homes != NULL ? 0 : ENOMEM;
}

/* The bit of key_homes[home] that a key hashed to h sets. */
static uint32_t key_home_bit(uint64_t h)
{
	return (uint32_t)1 << ((h >> 8) & 31);
}

/* Is r the record of key [s, len)? */
static bool key_rec_is(const struct backend *be, key_record r,
		       const char *s, size_t len)
{
	const struct entry *e;

	if (!(r[0] & KEY_REC_FAR))
		return r[1] == len &&
		       str_eq_nocase((const char *)r + KEY_REC_HEAD, len, s, len);
	e = &be->entries[key_rec_entry(r)];
	return str_eq_nocase(e->key, e->keylen, s, len);
}

/* The record of key [s, len) hashed to h, or NULL. No lookup reads a
 * bucket twice, whatever the marks. Inline: it is every lookup's path. */
static inline key_record keys_probe(const struct backend *be, const char *s,
				    size_t len, uint64_t h)
{
	unsigned char fp = (unsigned char)h;
	size_t i = key_home(be, h);

	/* Where an overflow goes on, fetched with the home bucket rather
	 * than after it. After the last bucket is the alignment's spare
	 * room: a prefetch there is only wasted. */
	__builtin_prefetch(key_bucket(be, i) + KEY_BUCKET);
	for (size_t n = 0; n < be->key_nbuckets; n++, i = key_next(be, i)) {
		const unsigned char *b = key_bucket(be, i);
		size_t count = b[0] & KEY_BUCKET_COUNT;
		const unsigned char *recs = b + KEY_BUCKET_HEAD + KEY_SLOT * count;

		/* The records' second line with the first, not after it. */
		__builtin_prefetch(b + KEY_BUCKET / 2);
		for (size_t k = 0; k < count; k++) {
			const unsigned char *sl = b + KEY_BUCKET_HEAD + KEY_SLOT * k;

			if (sl[0] == fp && key_rec_is(be, recs + sl[1], s, len))
				return recs + sl[1];
		}
		if (!(b[0] & KEY_BUCKET_OVERFLOW))
			break;
	}
	return NULL;
}

static key_record keys_find(const struct backend *be, const char *s,
			    size_t len)
{
	uint64_t h;
	size_t home;

	if (len == 0 || len > TABLE_KEY_MAX)
		return NULL;
	h = key_hash(s, len);
	home = key_home(be, h);
	/* On its way while the home's word is read, not after. */
	__builtin_prefetch(key_bucket(be, home));
	if (!(be->key_homes[home] & key_home_bit(h)))
		return NULL;
	return keys_probe(be, s, len, h);
}

/* The first bucket from home with room for a record of size octets and
 * its slot, within probes buckets; the bucket count when there is none. */
static size_t keys_room(const struct backend *be, size_t home, size_t size,
			size_t probes)
{
	size_t i = home;

	for (size_t n = 0; n < probes; n++, i = key_next(be, i))
		if (key_free(key_bucket(be, i)) >= KEY_SLOT + size)
			return i;
	return be->key_nbuckets;
}

/* Add entry idx's record to bucket b: near when size is not 0, else far. */
static void key_rec_write(struct backend *be, unsigned char *b, size_t size,
			  uint32_t idx, unsigned char fp)
{
	const struct entry *e = &be->entries[idx];
	size_t count = b[0] & KEY_BUCKET_COUNT, used = b[1];
	unsigned char *sl = b + KEY_BUCKET_HEAD + KEY_SLOT * count;
	unsigned char *r = sl + KEY_SLOT + used;

	memmove(sl + KEY_SLOT, sl, used);
	sl[0] = fp;
	sl[1] = (unsigned char)used;
	b[0] = (unsigned char)(b[0] + 1);
	b[1] = (unsigned char)(used + (size != 0 ? size : KEY_REC_FAR_SIZE));
	r[0] = e->kind;
	if (size == 0) {
		r[0] |= KEY_REC_FAR;
		memcpy(r + 1, &idx, sizeof(idx));
		return;
	}
	r[1] = (unsigned char)e->keylen;
	memcpy(r + KEY_REC_HEAD, e->key, e->keylen + 1u);
	if (e->value != NULL) {
		r[0] |= KEY_REC_VALUE;
		memcpy(r + KEY_REC_HEAD + e->keylen + 1, e->value,
		       size - KEY_REC_HEAD - e->keylen - 1);
	}
}

/*
 * Index entry idx, h its key's hash; false, indexing nothing, when its
 * key is indexed already. Sized at half full, the index always has a
 * bucket with room for a far record.
 */
static bool keys_insert(struct backend *be, uint32_t idx, uint64_t h)
{
	const struct entry *e = &be->entries[idx];
	size_t home = key_home(be, h), size, at = be->key_nbuckets;

	if (keys_probe(be, e->key, e->keylen, h) != NULL)
		return false;
	size = key_rec_size(e->keylen, e->kind, e->value == NULL ? 0 :
			    strnlen(e->value, KEY_BUCKET) + 1);
	if (size != 0)
		at = keys_room(be, home, size, KEY_NEAR_PROBES);
	if (at == be->key_nbuckets) {
		size = 0;
		at = keys_room(be, home, KEY_REC_FAR_SIZE, be->key_nbuckets);
	}
	if (at == be->key_nbuckets) {
		fprintf(stderr, "table: key index sized too small\n");
		abort();
	}
	for (size_t i = home; i != at; i = key_next(be, i))
		key_bucket(be, i)[0] |= KEY_BUCKET_OVERFLOW;
	key_rec_write(be, key_bucket(be, at), size, idx, (unsigned char)h);
	be->key_homes[home] |= key_home_bit(h);
	return true;
}

/* The earliest entry before idx with idx's key: a duplicate's first. */
static const struct entry *keys_first(const struct backend *be, size_t idx)
{
	const struct entry *d = &be->entries[idx];

	for (size_t i = 0; i < idx; i++)
		if (str_eq_nocase(be->entries[i].key, be->entries[i].keylen,
				  d->key, d->keylen))
			return &be->entries[i];
	return d;
}

/*
 * Index every entry parsed, in file order, so the first duplicate found is
 * the earliest. Returns -1 with *dup_r and *first_r set on a duplicate.
 */
static int keys_build(struct backend *be, const struct entry **dup_r,
		      const struct entry **first_r)
{
	size_t budget = 0;
	int rc;

	for (size_t i = 0; i < be->nentries; i++) {
		const struct entry *e = &be->entries[i];

		budget += key_rec_budget(e->keylen, e->value == NULL ? 0 :
					 strnlen(e->value, KEY_BUCKET) + 1);
	}
	rc = keys_alloc(be, budget);
	if (rc != 0)
		return rc;
	for (size_t base = 0; base < be->nentries; base += TABLE_BATCH) {
		size_t n = be->nentries - base;
		uint64_t h[TABLE_BATCH];

		n = n < TABLE_BATCH ? n : TABLE_BATCH;
		for (size_t j = 0; j < n; j++) {
			const struct entry *e = &be->entries[base + j];

			h[j] = key_hash(e->key, e->keylen);
			__builtin_prefetch(key_bucket(be, key_home(be, h[j])), 1);
		}
		for (size_t j = 0; j < n; j++) {
			if (keys_insert(be, (uint32_t)(base + j), h[j]))
				continue;
			*dup_r = &be->entries[base + j];
			*first_r = keys_first(be, base + j);
			return -1;
		}
	}
	return 0;
}

/* ---- parsing values ---- */

/* Append the words of [s, e) to the open user's full name, one space
 * apart. The name only ever moves left, over text already consumed. */
static void user_add_words(struct parser *p, char *s, char *e)
{
	char *w = p->name_end;

	for (;;) {
		char *t;

		s = text_skip_blanks(s, e);
		if (s == e)
			break;
		for (t = s; t < e && !text_is_blank(*t); t++)
			;
		if (w == NULL) {
			p->open->value = s;
			w = s;
		} else {
			*w++ = ' ';
		}
		memmove(w, s, (size_t)(t - s));
		w += t - s;
		s = t;
	}
	if (w != NULL)
		*w = '\0';
	p->name_end = w;
}

static int members_push(struct parser *p, const char *member)
{
	struct backend *be = p->be;

	if (be->nmembers == be->members_cap) {
		size_t cap = be->members_cap ? be->members_cap * 2 : 1024;
		const char **m;

		if (cap > TABLE_ENTRIES_MAX || cap > SIZE_MAX / sizeof(*m))
			return parser_fail_at(p, p->line,
					      "too many list members");
		m = realloc(be->members, cap * sizeof(*m));
		if (m == NULL)
			return parser_fail_at(p, p->line, "%s",
					      strerror(ENOMEM));
		be->members = m;
		be->members_cap = cap;
	}
	be->members[be->nmembers++] = member;
	p->open->nmembers++;
	return 0;
}

/* Find the next token of [*s, e) separated by commas or white space. */
static bool token_next(char **s, char *e, char **t_r)
{
	char *t;

	while (*s < e && text_is_separator(**s))
		(*s)++;
	if (*s == e)
		return false;
	for (t = *s; t < e && !text_is_separator(*t); t++)
		;
	*t_r = t;
	return true;
}

static int list_add_members(struct parser *p, char *s, char *e)
{
	char *t;

	while (token_next(&s, e, &t)) {
		size_t len = (size_t)(t - s);
		const char *why;

		text_lower_span(s, len);
		why = address_check(s, len, false);
		if (why != NULL)
			return parser_fail_at(p, p->line,
				"list " QUOTED ": bad member " QUOTED ": %s",
				SHOWN(p->open->key, p->open->keylen),
				SHOWN(s, len), why);
		*t = '\0';
		if (members_push(p, s) < 0)
			return -1;
		s = t < e ? t + 1 : e;
	}
	return 0;
}

static int target_add(struct parser *p, char *s, char *e)
{
	const char *kind = kind_names[p->open->kind];
	char *t;

	while (token_next(&s, e, &t)) {
		char *next = t < e ? t + 1 : e;
		size_t len;
		const char *why;

		if (p->naddrs++ > 0)
			return parser_fail_at(p, p->line,
				"%s " QUOTED ": more than one address",
				kind, SHOWN(p->open->key, p->open->keylen));
		if (t - s >= 2 && *s == '<' && t[-1] == '>') {
			s++;
			t--;
		}
		len = (size_t)(t - s);
		text_lower_span(s, len);
		why = address_check(s, len, true);
		if (why != NULL)
			return parser_fail_at(p, p->line,
				"%s " QUOTED ": bad address " QUOTED ": %s",
				kind, SHOWN(p->open->key, p->open->keylen),
				SHOWN(s, len), why);
		*t = '\0';
		p->open->value = s;
		s = next;
	}
	return 0;
}

static int value_add(struct parser *p, char *s, char *e)
{
	switch (p->open->kind) {
	case KIND_USER:
		user_add_words(p, s, e);
		return 0;
	case KIND_LIST:
		return list_add_members(p, s, e);
	default:
		return target_add(p, s, e);
	}
}

/* ---- parsing lines ---- */

/* The open entry is complete: is it whole? */
static int entry_finish(struct parser *p)
{
	struct entry *e = p->open;

	p->open = NULL;
	if (e == NULL)
		return 0;
	if (e->kind == KIND_LIST && e->nmembers == 0)
		return parser_fail_at(p, e->line,
				      "list " QUOTED " has no members",
				      SHOWN(e->key, e->keylen));
	if ((e->kind == KIND_FORWARD || e->kind == KIND_MOVED) &&
	    e->value == NULL)
		return parser_fail_at(p, e->line,
				      "%s " QUOTED ": missing address",
				      kind_names[e->kind],
				      SHOWN(e->key, e->keylen));
	return 0;
}

static struct entry *entry_new(struct parser *p, char *key, size_t keylen,
			       int kind)
{
	struct backend *be = p->be;
	struct entry *e;

	if (be->nentries >= be->entries_cap) {
		/* entry lines were counted before parsing: this cannot be */
		fprintf(stderr, "table: entry count bound broken\n");
		abort();
	}
	e = &be->entries[be->nentries++];
	*e = (struct entry){
		.key = key,
		.line = p->line,
		.first = (uint32_t)be->nmembers,
		.keylen = (uint16_t)keylen,
		.kind = (uint8_t)kind,
	};
	return e;
}

/* "KEY KIND [VALUE]" in [s, e): s is not blank, e is trimmed. */
static int parse_entry(struct parser *p, char *s, char *e)
{
	char *k, *ks, *ke;
	size_t keylen;
	const char *why;
	int kind;

	if (entry_finish(p) < 0)
		return -1;
	for (k = s; k < e && !text_is_blank(*k); k++)
		;
	keylen = (size_t)(k - s);
	text_lower_span(s, keylen);
	why = address_check(s, keylen, false);
	if (why != NULL)
		return parser_fail_at(p, p->line, "bad key " QUOTED ": %s",
				      SHOWN(s, keylen), why);
	ks = text_skip_blanks(k, e);
	if (ks == e)
		return parser_fail_at(p, p->line,
			"missing kind after " QUOTED " (" TABLE_KINDS ")",
			SHOWN(s, keylen));
	for (ke = ks; ke < e && !text_is_blank(*ke); ke++)
		;
	kind = kind_parse(ks, (size_t)(ke - ks));
	if (kind < 0)
		return parser_fail_at(p, p->line,
			"unknown kind " QUOTED " (" TABLE_KINDS ")",
			SHOWN(ks, (size_t)(ke - ks)));
	*k = '\0';
	p->open = entry_new(p, s, keylen, kind);
	p->name_end = NULL;
	p->naddrs = 0;
	return value_add(p, ke < e ? ke + 1 : e, e);
}

/*
 * Check [s, *e) for control characters and cut it at a comment: a '#' at
 * the start or after white space. A CR before the line end is allowed, so
 * tables edited on other systems load.
 */
static int line_scan(struct parser *p, char *s, char **e)
{
	char *end = *e, *comment = NULL;

	if (end > s && end[-1] == '\r')
		end--;
	for (char *c = s; c < end; c++) {
		if (text_is_control((unsigned char)*c))
			return parser_fail_at(p, p->line,
				"control character 0x%02x in column %lu",
				(unsigned char)*c, (unsigned long)(c - s + 1));
		if (*c == '#' && comment == NULL &&
		    (c == s || text_is_blank(c[-1])))
			comment = c;
	}
	if (comment != NULL)
		end = comment;
	while (end > s && text_is_blank(end[-1]))
		end--;
	*e = end;
	return 0;
}

static int parse_line(struct parser *p, char *s, char *e)
{
	if (line_scan(p, s, &e) < 0)
		return -1;
	if (e == s)
		return 0;
	if (!text_is_blank(*s))
		return parse_entry(p, s, e);
	if (p->open == NULL)
		return parser_fail_at(p, p->line,
				      "continuation line before any entry");
	return value_add(p, text_skip_blanks(s, e), e);
}

static int table_parse(struct parser *p, char *buf, size_t len)
{
	char *s = buf, *end = buf + len;

	while (s < end) {
		char *nl = memchr(s, '\n', (size_t)(end - s));
		char *e = nl != NULL ? nl : end;

		if (p->line == UINT32_MAX)
			return parser_fail_at(p, p->line, "too many lines");
		p->line++;
		if (parse_line(p, s, e) < 0)
			return -1;
		s = nl != NULL ? nl + 1 : end;
	}
	return entry_finish(p);
}

/* ---- the full-name and word indexes ---- */

/* The slot of a full name: its own, or the free one it would take. */
static struct name_slot *names_slot(const struct backend *be,
				    const char *name, size_t len, uint32_t h)
{
	for (size_t i = h & be->names_mask;; i = (i + 1) & be->names_mask) {
		struct name_slot *sl = &be->names[i];
		const char *v;

		if (sl->entry == 0)
			return sl;
		if (sl->hash != h)
			continue;
		v = be->entries[sl->entry - 1].value;
		if (str_eq_nocase(v, strlen(v), name, len))
			return sl;
	}
}

/* The slot of a name word: its own, or the free one it would take. */
static struct word_slot *words_slot(const struct backend *be,
				    const char *w, size_t len, uint32_t h)
{
	for (size_t i = h & be->words_mask;; i = (i + 1) & be->words_mask) {
		struct word_slot *sl = &be->words[i];

		if (sl->head == 0)
			return sl;
		if (sl->hash == h && str_eq_nocase(sl->text, sl->len, w, len))
			return sl;
	}
}

/* Make room for more distinct words, keeping the load at most 1/2. */
static int words_reserve(struct backend *be, size_t more)
{
	size_t cap = be->words_mask + 1;
	struct word_slot *slots;

	if ((be->nwords + more) * 2 <= cap)
		return 0;
	while ((be->nwords + more) * 2 > cap)
		cap *= 2;
	slots = table_calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return ENOMEM;
	for (size_t i = 0; i <= be->words_mask; i++) {
		const struct word_slot *sl = &be->words[i];
		size_t j;

		if (sl->head == 0)
			continue;
		for (j = sl->hash & (cap - 1); slots[j].head != 0;
		     j = (j + 1) & (cap - 1))
			;
		slots[j] = *sl;
	}
	free(be->words);
	be->words = slots;
	be->words_mask = cap - 1;
	return 0;
}

static bool entry_has_name(const struct entry *e)
{
	return e->kind == KIND_USER && e->value != NULL;
}

/* Words of a stored full name: never empty, one space apart. */
static size_t name_words(const char *name)
{
	size_t n = 1;

	for (; *name != '\0'; name++)
		n += *name == ' ';
	return n;
}

/* One posting per word of every full name, in table order. */
static void postings_fill(struct backend *be)
{
	for (size_t i = 0; i < be->nentries; i++) {
		const char *name = be->entries[i].value;
		size_t off = 0;

		if (!entry_has_name(&be->entries[i]))
			continue;
		for (;;) {
			const char *sp = strchr(name + off, ' ');

			be->postings[be->npostings++] = (struct posting){
				.entry = (uint32_t)i,
				.off = (uint32_t)off,
			};
			if (sp == NULL)
				break;
			off = (size_t)(sp - name) + 1;
		}
	}
}

/* Up to TABLE_BATCH named users from *next on, into idx[]. */
static size_t names_batch(const struct backend *be, size_t *next,
			  size_t idx[TABLE_BATCH])
{
	size_t n = 0;

	for (; *next < be->nentries && n < TABLE_BATCH; (*next)++)
		if (entry_has_name(&be->entries[*next]))
			idx[n++] = *next;
	return n;
}

static void names_index_all(struct backend *be)
{
	size_t next = 0, idx[TABLE_BATCH], len[TABLE_BATCH], n;
	uint32_t h[TABLE_BATCH];

	while ((n = names_batch(be, &next, idx)) > 0) {
		for (size_t j = 0; j < n; j++) {
			const char *v = be->entries[idx[j]].value;

			len[j] = strlen(v);
			h[j] = table_hash(v, len[j]);
			__builtin_prefetch(&be->names[h[j] & be->names_mask],
					   1);
		}
		for (size_t j = 0; j < n; j++) {
			struct name_slot *sl = names_slot(be,
				be->entries[idx[j]].value, len[j], h[j]);

			sl->hash = h[j];
			sl->entry = (uint32_t)idx[j] + 1;
			sl->count++;
		}
	}
}

/* The word a posting stands for, and its length. */
static const char *posting_word(const struct backend *be,
				const struct posting *ps, size_t *len_r)
{
	const char *w = be->entries[ps->entry].value + ps->off;
	const char *sp = strchr(w, ' ');

	*len_r = sp != NULL ? (size_t)(sp - w) : strlen(w);
	return w;
}

static int words_index_all(struct backend *be)
{
	const char *w[TABLE_BATCH];
	size_t len[TABLE_BATCH];
	uint32_t h[TABLE_BATCH];

	for (size_t base = 0; base < be->npostings; base += TABLE_BATCH) {
		size_t n = be->npostings - base;

		n = n < TABLE_BATCH ? n : TABLE_BATCH;
		if (words_reserve(be, n) != 0)
			return ENOMEM;
		for (size_t j = 0; j < n; j++) {
			w[j] = posting_word(be, &be->postings[base + j],
					    &len[j]);
			h[j] = table_hash(w[j], len[j]);
			__builtin_prefetch(&be->words[h[j] & be->words_mask],
					   1);
		}
		for (size_t j = 0; j < n; j++) {
			struct word_slot *sl = words_slot(be, w[j], len[j],
							  h[j]);

			if (sl->head == 0) {
				*sl = (struct word_slot){ .text = w[j],
					.len = (uint32_t)len[j], .hash = h[j] };
				be->nwords++;
			}
			be->postings[base + j].next = sl->head;
			sl->head = (uint32_t)(base + j) + 1;
			sl->count++;
		}
	}
	return 0;
}

/*
 * Full names are mostly distinct, so their index is sized for all of them;
 * words repeat (given names, family names), so theirs grows as needed.
 */
static int names_build(struct backend *be)
{
	size_t nnamed = 0, nwords = 0;

	for (size_t i = 0; i < be->nentries; i++) {
		if (!entry_has_name(&be->entries[i]))
			continue;
		nnamed++;
		nwords += name_words(be->entries[i].value);
	}
	if (nwords > TABLE_ENTRIES_MAX)
		return ENOMEM;
	be->names_mask = index_capacity(nnamed) - 1;
	be->names = table_calloc(be->names_mask + 1, sizeof(*be->names));
	be->words_mask = index_capacity(512) - 1;
	be->words = table_calloc(be->words_mask + 1, sizeof(*be->words));
	be->postings = table_calloc(nwords, sizeof(*be->postings));
	if (be->names == NULL || be->words == NULL || be->postings == NULL)
		return ENOMEM;
	postings_fill(be);
	names_index_all(be);
	return words_index_all(be);
}

/* ---- name matching ---- */

/* Users whose full name is the query's words, one space apart. */
static enum dir_status names_match_exact(const struct backend *be,
					 const struct name_query *q,
					 const struct entry **e_r)
{
	char name[COMMAND_LINE_MAX];
	const struct name_slot *sl;
	size_t len;

	if (!name_query_join(q, name, sizeof(name), &len))
		return DIR_NOTFOUND;
	sl = names_slot(be, name, len, table_hash(name, len));
	if (sl->entry == 0)
		return DIR_NOTFOUND;
	if (sl->count > 1)
		return DIR_AMBIGUOUS;
	*e_r = &be->entries[sl->entry - 1];
	return DIR_USER;
}

/* The slot of the query word with the fewest postings; NULL when a word
 * is in no name at all. */
static const struct word_slot *words_rarest(const struct backend *be,
					    const struct name_query *q)
{
	const struct word_slot *best = NULL;

	for (size_t i = 0; i < q->n; i++) {
		const struct word_slot *sl = words_slot(be, q->word[i],
			q->len[i], table_hash(q->word[i], q->len[i]));

		if (sl->head == 0)
			return NULL;
		if (best == NULL || sl->count < best->count)
			best = sl;
	}
	return best;
}

/*
 * Users whose name holds every query word: two distinct ones decide. The
 * walk is along the rarest word's postings only, and stops at the second
 * user found; a query word in no name at all costs one probe.
 */
static enum dir_status names_match_words(const struct backend *be,
					 const struct name_query *q,
					 const struct entry **e_r)
{
	const struct word_slot *sl = words_rarest(be, q);
	uint32_t found = 0;

	if (sl == NULL)
		return DIR_NOTFOUND;
	for (uint32_t ref = sl->head; ref != 0;) {
		const struct posting *ps = &be->postings[ref - 1];

		ref = ps->next;
		if (found == ps->entry + 1 ||
		    !name_query_in(be->entries[ps->entry].value, q))
			continue;
		if (found != 0)
			return DIR_AMBIGUOUS;
		found = ps->entry + 1;
	}
	if (found == 0)
		return DIR_NOTFOUND;
	*e_r = &be->entries[found - 1];
	return DIR_USER;
}

static enum dir_status names_match(const struct backend *be, const char *text,
				   const struct entry **e_r)
{
	struct name_query q;
	enum dir_status st;

	if (!name_query_split(text, &q))
		return DIR_NOTFOUND;
	st = names_match_exact(be, &q, e_r);
	if (st != DIR_NOTFOUND)
		return st;
	return names_match_words(be, &q, e_r);
}

/* ---- tables built in memory (table_open_users) ---- */

/* Why a user's key could not be a key of the table file, or NULL. */
static const char *user_key_check(const char *key)
{
	size_t len = key != NULL ? strnlen(key, TABLE_KEY_MAX + 1) : 0;

	for (size_t i = 0; i < len; i++)
		if (text_is_blank(key[i]) ||
		    text_is_control((unsigned char)key[i]))
			return "blank or control character";
	return address_check(key, len, false);
}

/* Octets the copies of users[0 .. n) take, NULs included; 0 when that
 * would not fit in a size_t. */
static size_t users_size(const struct table_user *users, size_t n)
{
	size_t size = 1;

	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(users[i].key) + 1;
		size_t f = users[i].fullname != NULL ?
			   strlen(users[i].fullname) + 1 : 0;

		if (f > SIZE_MAX - k || size > SIZE_MAX - k - f)
			return 0;
		size += k + f;
	}
	return size;
}

/* What the key index reserves for users[0 .. n), by their names as
 * given: the copies only ever shorten them. */
static size_t users_key_budget(const struct table_user *users, size_t n)
{
	size_t budget = 0;

	for (size_t i = 0; i < n; i++)
		budget += key_rec_budget(strlen(users[i].key),
			users[i].fullname != NULL ?
			strnlen(users[i].fullname, KEY_BUCKET) + 1 : 0);
	return budget;
}

/* Copy the words of name to *w_p one space apart, as the table file
 * stores a full name; the copy, or NULL (nothing copied) when it has no
 * word. Control characters separate words: none may reach a reply. */
static const char *user_name_copy(char **w_p, const char *name)
{
	char *start = *w_p, *w = start;
	bool gap = false;

	for (; name != NULL && *name != '\0'; name++) {
		if (text_is_blank(*name) ||
		    text_is_control((unsigned char)*name)) {
			gap = w != start;
			continue;
		}
		if (gap)
			*w++ = ' ';
		gap = false;
		*w++ = *name;
	}
	if (w == start)
		return NULL;
	*w++ = '\0';
	*w_p = w;
	return start;
}

/* Copy u into the next entry at *w_p and index its key. A key indexed
 * already leaves the entry and the copy unused: the first one stands. */
static void users_add(struct backend *be, const struct table_user *u,
		      uint32_t pos, char **w_p, size_t *duplicates_r)
{
	struct entry *e = &be->entries[be->nentries];
	size_t keylen = strlen(u->key);
	char *w = *w_p;

	memcpy(w, u->key, keylen + 1);
	text_lower_span(w, keylen);
	*e = (struct entry){ .key = w, .line = pos,
			     .keylen = (uint16_t)keylen, .kind = KIND_USER };
	w += keylen + 1;
	e->value = user_name_copy(&w, u->fullname);
	if (!keys_insert(be, (uint32_t)be->nentries, key_hash(e->key, keylen))) {
		(*duplicates_r)++;
		return;
	}
	be->nentries++;
	*w_p = w;
}

static int users_load(struct backend *be, const struct table_user *users,
		      size_t n, size_t *duplicates_r, char *err,
		      size_t errsize)
{
	size_t size;
	char *w;

	for (size_t i = 0; i < n; i++) {
		const char *why = user_key_check(users[i].key);

		if (why != NULL) {
			str_error(err, errsize, "%s: user %zu: bad key: %s",
				  be->path, i + 1, why);
			return -1;
		}
	}
	size = users_size(users, n);
	if (n > TABLE_ENTRIES_MAX || size == 0) {
		str_error(err, errsize, "%s: too many entries", be->path);
		return -1;
	}
	be->entries_cap = n;
	be->entries = table_calloc(n, sizeof(*be->entries));
	be->buf = malloc(size);
	if (be->entries == NULL || be->buf == NULL ||
	    keys_alloc(be, users_key_budget(users, n)) != 0)
		goto nomem;
	w = be->buf;
	for (size_t i = 0; i < n; i++)
		users_add(be, &users[i], (uint32_t)(i + 1), &w, duplicates_r);
	if (names_build(be) == 0)
		return 0;
nomem:
	str_error(err, errsize, "%s: %s", be->path, strerror(ENOMEM));
	return -1;
}

int table_open_users(const char *what, const struct table_user *users,
		     size_t n, struct backend **be_r, size_t *duplicates_r,
		     char *err, size_t errsize)
{
	struct backend *be;

	*be_r = NULL;
	*duplicates_r = 0;
	be = calloc(1, sizeof(*be));
	if (be == NULL || (be->path = strdup(what)) == NULL) {
		free(be);
		str_error(err, errsize, "%s: %s", what, strerror(ENOMEM));
		return -1;
	}
	if (users_load(be, users, n, duplicates_r, err, errsize) < 0) {
		table_close(&be);
		return -1;
	}
	*be_r = be;
	return 0;
}

/* ---- the vtable ---- */

static const enum dir_status kind_status[KIND__COUNT] = {
	[KIND_USER] = DIR_USER,
	[KIND_LIST] = DIR_LIST,
	[KIND_FORWARD] = DIR_FORWARD,
	[KIND_MOVED] = DIR_MOVED,
};

static void result_fill(const struct backend *be, const struct entry *e,
			struct dir_result *res)
{
	res->status = kind_status[e->kind];
	res->key = e->key;
	if (e->kind == KIND_USER) {
		res->fullname = e->value;
	} else if (e->kind == KIND_LIST) {
		res->members = be->members + e->first;
		res->nmembers = e->nmembers;
	} else {
		res->target = e->value;
	}
}

/* The answer of a key's record: the same strings as its entry's, from
 * the copies beside the key. */
static void result_fill_key(const struct backend *be, key_record r,
			    struct dir_result *res)
{
	const char *key = (const char *)r + KEY_REC_HEAD, *value = NULL;

	if (r[0] & KEY_REC_FAR) {
		result_fill(be, &be->entries[key_rec_entry(r)], res);
		return;
	}
	if (r[0] & KEY_REC_VALUE)
		value = key + r[1] + 1;
	res->status = kind_status[r[0] & KEY_REC_KIND];
	res->key = key;
	if (res->status == DIR_USER)
		res->fullname = value;
	else
		res->target = value;
}

static key_record table_find(const struct backend *be, const char *s)
{
	return s != NULL ? keys_find(be, s, strnlen(s, TABLE_KEY_MAX + 1))
			 : NULL;
}

static void table_lookup(struct backend *be, const struct dir_query *q,
			 backend_done_fn *done, void *arg)
{
	struct dir_result res = { .status = DIR_NOTFOUND };
	const struct entry *e = NULL;
	key_record r = NULL;

	if (q->address != NULL)
		r = table_find(be, q->address);
	if (r == NULL)
		r = table_find(be, q->local);
	if (r != NULL)
		result_fill_key(be, r, &res);
	else if (q->address == NULL && q->by_name && q->local != NULL) {
		res.status = names_match(be, q->local, &e);
		if (res.status == DIR_USER)
			result_fill(be, e, &res);
	}
	done(&res, arg);
}

static size_t table_count(const struct backend *be)
{
	return be->nentries;
}

static int table_alloc(struct backend *be, size_t bound)
{
	if (bound > TABLE_ENTRIES_MAX)
		return EFBIG;
	be->entries_cap = bound;
	be->entries = table_calloc(bound, sizeof(*be->entries));
	return be->entries != NULL ? 0 : ENOMEM;
}

/* Read the file and size the entries for it. */
static int table_read(struct backend *be, size_t *len_r, char *err,
		      size_t errsize)
{
	int rc = str_read_file(be->path, &be->buf, len_r);

	if (rc == 0)
		rc = table_alloc(be, text_count_entry_lines(be->buf, *len_r));
	if (rc != 0) {
		str_error(err, errsize, "%s: %s", be->path,
			  rc == EINVAL ? "not a regular file" :
			  rc == EFBIG ? "too many entries" : strerror(rc));
		return -1;
	}
	return 0;
}

static int table_load(struct backend *be, char *err, size_t errsize)
{
	struct parser p = { .be = be, .err = err, .errsize = errsize };
	const struct entry *dup = NULL, *first = NULL;
	size_t len;
	int rc, parsed;

	if (table_read(be, &len, err, errsize) < 0)
		return -1;
	/*
	 * Keys are indexed after parsing, even when parsing failed: a
	 * duplicate is never on a later line than the failure, so reporting
	 * it instead keeps "the first error in the file" true.
	 */
	parsed = table_parse(&p, be->buf, len);
	rc = keys_build(be, &dup, &first);
	if (rc < 0)
		return parser_fail_at(&p, dup->line,
			"duplicate key " QUOTED " (first on line %lu)",
			SHOWN(dup->key, dup->keylen),
			(unsigned long)first->line);
	if (parsed < 0)
		return -1;
	if (rc == 0)
		rc = names_build(be);
	if (rc != 0) {
		str_error(err, errsize, "%s: %s", be->path, strerror(rc));
		return -1;
	}
	return 0;
}

int table_open_path(const char *path, struct backend **be_r, char *err,
		    size_t errsize)
{
	struct backend *be;

	*be_r = NULL;
	be = calloc(1, sizeof(*be));
	if (be == NULL || (be->path = strdup(path)) == NULL) {
		free(be);
		str_error(err, errsize, "%s: %s", path, strerror(ENOMEM));
		return -1;
	}
	if (table_load(be, err, errsize) < 0) {
		table_close(&be);
		return -1;
	}
	*be_r = be;
	return 0;
}

static int table_open(const char *args, const char *base_dir,
		      struct backend **be_r, char *err, size_t errsize)
{
	char path[TABLE_PATH_MAX];

	*be_r = NULL;
	if (text_path_arg("table", args, base_dir, path, sizeof(path), err,
			  errsize) < 0)
		return -1;
	return table_open_path(path, be_r, err, errsize);
}

size_t table_entry_count(const struct backend *be)
{
	return be->nentries;
}

void table_entry_get(const struct backend *be, size_t i,
		     struct dir_result *res_r)
{
	*res_r = (struct dir_result){ .status = DIR_NOTFOUND };
	if (i < be->nentries)
		result_fill(be, &be->entries[i], res_r);
}

static void table_close(struct backend **be_p)
{
	struct backend *be = *be_p;

	if (be == NULL)
		return;
	free(be->postings);
	free(be->words);
	free(be->names);
	free(be->key_homes);
	free(be->key_mem);
	free(be->members);
	free(be->entries);
	free(be->buf);
	free(be->path);
	free(be);
	*be_p = NULL;
}

const struct backend_ops backend_table_ops = {
	.name = "table",
	.open = table_open,
	.lookup = table_lookup,
	.count = table_count,
	.close = table_close,
};
