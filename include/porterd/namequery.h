/*
 * namequery — a free-text directory query ("VRFY Fred Smith") as every
 * backend that answers by full name reads it: the query's words, the
 * whole name they spell, and whether a full name holds them all. What
 * answers a query (one user, several, none) is each backend's own; what
 * the query means is here, so that all backends mean the same.
 */
#ifndef PORTERD_NAMEQUERY_H
#define PORTERD_NAMEQUERY_H

#include <stdbool.h>
#include <stddef.h>

#define NAME_QUERY_WORDS_MAX 16	/* a query with more words never matches */

/* The words of a query, pointing into its text. */
struct name_query {
	const char *word[NAME_QUERY_WORDS_MAX];
	size_t len[NAME_QUERY_WORDS_MAX];
	size_t n;
};

/* Split text on blanks into q; false when it has no word or too many. */
bool name_query_split(const char *text, struct name_query *q);

/*
 * The whole name the query spells: its words one space apart, as a table
 * stores a full name, NUL-terminated in buf; its length in *len_r. False
 * when it does not fit in size octets.
 */
bool name_query_join(const struct name_query *q, char *buf, size_t size,
		     size_t *len_r);

/* True when every query word is a word of name (words one space apart),
 * ignoring ASCII case. */
bool name_query_in(const char *name, const struct name_query *q);

#endif
