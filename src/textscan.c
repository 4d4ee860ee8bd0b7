/*
 * textscan — words, paths and entry lines as the directory backends read
 * them, so that every backend reads its file and its arguments alike.
 *
 * It must never allocate or touch a file: callers own every buffer.
 */
#include "porterd/textscan.h"

#include <stdio.h>
#include <string.h>

const char *text_next_word(const char *s, const char **end_r)
{
	const char *e;

	s = text_skip_blanks_str(s);
	if (*s == '\0')
		return NULL;
	for (e = s; *e != '\0' && !text_is_blank(*e); e++)
		;
	*end_r = e;
	return s;
}

bool text_path_resolve(char *path, size_t pathsize, const char *base_dir,
		       const char *s, size_t len)
{
	int n;

	if (len >= pathsize)
		return false;
	if (*s == '/' || base_dir == NULL || *base_dir == '\0')
		n = snprintf(path, pathsize, "%.*s", (int)len, s);
	else
		n = snprintf(path, pathsize, "%s%s%.*s", base_dir,
			     base_dir[strlen(base_dir) - 1] == '/' ? "" : "/",
			     (int)len, s);
	return n >= 0 && (size_t)n < pathsize;
}

int text_path_arg(const char *backend, const char *args, const char *base_dir,
		  char *path, size_t pathsize, char *err, size_t errsize)
{
	const char *s, *e, *rest;

	s = text_next_word(args != NULL ? args : "", &e);
	if (s == NULL || text_next_word(e, &rest) != NULL)
		return str_error(err, errsize, "%s: expected one PATH", backend);
	if (!text_path_resolve(path, pathsize, base_dir, s, (size_t)(e - s)))
		return str_error(err, errsize, "%s: path too long", backend);
	return 0;
}

size_t text_count_entry_lines(const char *buf, size_t len)
{
	const char *s = buf, *end = buf + len;
	size_t n = 0;

	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));

		n += !text_is_blank(*s) && *s != '#' && *s != '\n' && *s != '\r';
		if (nl == NULL)
			break;
		s = nl + 1;
	}
	return n;
}
