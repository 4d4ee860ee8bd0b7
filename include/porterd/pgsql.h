/*
 * pgsql — the `pgsql` directory backend (backend_pgsql_ops): addresses
 * looked up in PostgreSQL through libpq, asynchronously on the event loop.
 *
 * Declared here are the parts that need no server, so they can be tested
 * alone: the directive's parameters, and how the rows of a query become
 * an answer. The backend itself is backend.h's vtable.
 */
#ifndef PORTERD_PGSQL_H
#define PORTERD_PGSQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "porterd/backend.h"

#define PGSQL_POOL_DEFAULT 2		/* connections */
#define PGSQL_POOL_MAX 32
#define PGSQL_TIMEOUT_DEFAULT 5		/* seconds */
#define PGSQL_TIMEOUT_MIN 1
#define PGSQL_TIMEOUT_MAX 300
#define PGSQL_QUEUE_MAX 512		/* lookups waiting for a connection */
#define PGSQL_ROWS_MAX 10000		/* rows (and list members) kept */
#define PGSQL_RESULT_MAX (1024 * 1024)	/* octets of values kept */
#define PGSQL_BACKOFF_MIN_MS 100	/* first wait before reconnecting */
#define PGSQL_BACKOFF_MAX_MS 10000

/* The directive's parameters; query_name is NULL when not given. */
struct pgsql_params {
	char *conninfo;
	char *query_user;
	char *query_list;
	char *query_name;
	uint64_t timeout;	/* seconds */
	unsigned pool;
};

/*
 * Parse "NAME=VALUE ..." (see porterd.conf(5)). A value is a word without
 * blanks or '"', or a double-quoted string in which \" and \\ stand for
 * '"' and '\'. On error returns -1 with "pgsql: ..." in err and nothing
 * to free.
 */
int pgsql_params_parse(const char *args, struct pgsql_params *p,
		       char *err, size_t errsize);
void pgsql_params_clear(struct pgsql_params *p);

/*
 * The rows of one query: the first two columns of each (SQL NULL or a
 * missing column is a NULL value), bounded by PGSQL_ROWS_MAX rows and
 * PGSQL_RESULT_MAX octets. Scratch space is kept across reset.
 */
struct pgsql_rows {
	char *text;		/* values back to back, NUL-terminated */
	size_t len, cap;
	size_t *cells;		/* two offsets a row into text */
	size_t ncells, cells_cap;
	size_t nrows;
	bool too_many;		/* rows or octets past the bounds: dropped */
	const char **members;	/* pgsql_answer_list()'s output */
	size_t members_cap;
};

void pgsql_rows_reset(struct pgsql_rows *r);
/* Add one row; a NULL value is SQL NULL (its length is ignored). */
void pgsql_rows_add(struct pgsql_rows *r, const char *v0, size_t len0,
		    const char *v1, size_t len1);
/* Value col (0 or 1) of row; NULL for SQL NULL. */
const char *pgsql_rows_value(const struct pgsql_rows *r, size_t row, int col);
void pgsql_rows_free(struct pgsql_rows *r);

/*
 * The answer a query's rows give; res points into rows (and key) until
 * they change. Each returns res->status, and with DIR_TEMPFAIL *why_r
 * says what was wrong with the rows (for the log); else *why_r is NULL.
 *
 *   user  no row: DIR_NOTFOUND; one row: DIR_USER key, its first value
 *         the full name (NULL or blank: none); more: DIR_TEMPFAIL.
 *   list  every row's first value is one member or several separated by
 *         commas or blanks; none: DIR_NOTFOUND; one member in a domain
 *         not in domains: DIR_FORWARD to it; else DIR_LIST key.
 *   name  rows of (address or local part, full name); none: DIR_NOTFOUND;
 *         all the same address: DIR_USER; several: DIR_AMBIGUOUS.
 *
 * Values are lowercased (addresses) or cleaned (names: control
 * characters and runs of white space become one space) in place; an
 * address with a blank, a control character, '<', '>' or more than one
 * '@', or longer than an address may be, is skipped.
 */
enum dir_status pgsql_answer_user(struct pgsql_rows *rows, const char *key,
				  struct dir_result *res, const char **why_r);
enum dir_status pgsql_answer_list(struct pgsql_rows *rows, const char *key,
				  const char *const *domains, size_t ndomains,
				  struct dir_result *res, const char **why_r);
enum dir_status pgsql_answer_name(struct pgsql_rows *rows,
				  struct dir_result *res, const char **why_r);

#endif
