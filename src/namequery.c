/*
 * namequery — the words of a free-text directory query, and the tests a
 * backend applies to a full name with them.
 *
 * It must never allocate or copy the query: the words point into the
 * caller's text, which must outlive them.
 */
#include "porterd/namequery.h"

#include <string.h>

#include "porterd/strutil.h"
#include "porterd/textscan.h"

bool name_query_split(const char *text, struct name_query *q)
{
	const char *w, *end;

	q->n = 0;
	while ((w = text_next_word(text, &end)) != NULL) {
		if (q->n == NAME_QUERY_WORDS_MAX)
			return false;
		q->word[q->n] = w;
		q->len[q->n++] = (size_t)(end - w);
		text = end;
	}
	return q->n > 0;
}

bool name_query_join(const struct name_query *q, char *buf, size_t size,
		     size_t *len_r)
{
	size_t len = 0;

	for (size_t i = 0; i < q->n; i++) {
		if (len + (i > 0) + q->len[i] >= size)
			return false;
		if (i > 0)
			buf[len++] = ' ';
		memcpy(buf + len, q->word[i], q->len[i]);
		len += q->len[i];
	}
	if (len >= size)
		return false;
	buf[len] = '\0';
	*len_r = len;
	return true;
}

static bool name_has_word(const char *name, const char *w, size_t len)
{
	for (;;) {
		const char *sp = strchr(name, ' ');
		size_t n = sp != NULL ? (size_t)(sp - name) : strlen(name);

		if (str_eq_nocase(name, n, w, len))
			return true;
		if (sp == NULL)
			return false;
		name = sp + 1;
	}
}

bool name_query_in(const char *name, const struct name_query *q)
{
	for (size_t i = 0; i < q->n; i++)
		if (!name_has_word(name, q->word[i], q->len[i]))
			return false;
	return true;
}
