/*
 * table — the `table` backend's own entry points, for modules that build
 * on it: open a table file by path, walk its entries in table order, or
 * build a table from entries held in memory (the system's accounts) that
 * must answer exactly as a table does: a key first, then words of full
 * names, one match a user and several ambiguous. Every backend these
 * return is a table backend: answered, counted and closed through
 * backend_table_ops.
 */
#ifndef PORTERD_TABLE_H
#define PORTERD_TABLE_H

#include <stddef.h>

#include "porterd/backend.h"

/* Open the table file at path (already resolved); errors as table's open. */
int table_open_path(const char *path, struct backend **be_r, char *err,
		    size_t errsize);

/* The number of entries, and entry i (0 <= i < count) in table order as a
 * lookup would answer it; DIR_NOTFOUND past the end. */
size_t table_entry_count(const struct backend *be);
void table_entry_get(const struct backend *be, size_t i,
		     struct dir_result *res_r);

/* One user: key a bare local part in any case, fullname NULL for none. */
struct table_user {
	const char *key;
	const char *fullname;
};

/*
 * Build a table backend holding users[0 .. n) as `user` entries; the
 * strings are copied. Keys are stored lowercase. In a full name every run
 * of blanks or control characters becomes one space and the ends are
 * trimmed, as the table file's words are; a name left empty is none. A
 * key given again is kept at its first occurrence only; *duplicates_r
 * counts the later ones left out. what names the source in messages. A
 * key the table file would refuse (empty, over 256 octets, with a blank
 * or control character, or an '@' but not as local@domain) is an error:
 * returns -1 with "what: user N: bad key: why" in err.
 */
int table_open_users(const char *what, const struct table_user *users,
		     size_t n, struct backend **be_r, size_t *duplicates_r,
		     char *err, size_t errsize);

#endif
