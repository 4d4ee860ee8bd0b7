/*
 * makemap — compile a porterd table file into an LMDB map (the layout in
 * lmdbmap.h), atomically: the map is built aside in a new file in the
 * output's directory, synced, renamed over the output and the directory
 * synced, so a reader sees the old map or the new one, whole, and a
 * failure leaves the old one and nothing else behind.
 */
#ifndef PORTERD_MAKEMAP_H
#define PORTERD_MAKEMAP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define MAKEMAP_PATH_MAX 4096

struct makemap {
	/* In: what to read and where to put the map. */
	const char *table_path;
	const char *out_path;
	/* In: the map size to start from, in octets (0: estimated from the
	 * table's size); it doubles whenever the map fills up. */
	size_t initial_mapsize;
	/* In: the keys' dictionary's buckets (0: as lmdbmap.h's
	 * LMDBMAP_BUCKET_LOAD and LMDBMAP_BUCKET_FILL ask). Tests ask for
	 * fewer to crowd it; never fewer than its slots need to hold every
	 * key. */
	size_t buckets;

	/*
	 * While tmp_live is set, tmp_path is a file being built that nothing
	 * else will remove: a signal handler may unlink(2) it and exit.
	 */
	char tmp_path[MAKEMAP_PATH_MAX];
	volatile sig_atomic_t tmp_live;

	/* Out, on success: what the map holds, and what it took. */
	size_t entries;		/* keys */
	size_t fullnames;	/* (full name, key) pairs */
	size_t words;		/* (word, key) pairs */
	size_t mapsize;		/* the final map size */
	unsigned grows;		/* times the map was found full */
	/* The keys' dictionary (lmdbdict.h): */
	size_t buckets_made;
	size_t full_buckets;	/* a missing key's search goes on past */
	size_t max_probe;	/* farthest a key is past its home bucket */
	size_t inline_records;	/* read with their slots, in one trip */
};

/*
 * Build m->out_path from m->table_path. On failure returns -1 with the
 * table's "PATH:LINE: message", or "PATH: message" naming the file that
 * could not be read or written, in err; the output is then untouched and
 * no file of the build remains.
 */
int makemap_build(struct makemap *m, char *err, size_t errsize);

/* "TABLE.lmdb" for table into buf; false when it does not fit. */
bool makemap_default_output(const char *table_path, char *buf, size_t size);

#endif
