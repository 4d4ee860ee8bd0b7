/*
 * textscan — the lexical conventions the directory backends' parsers
 * share, in their files and in their `directory` arguments: blanks and
 * separators, control characters, a bad token quoted in a message, words
 * of an argument string, and the one PATH a file backend is given.
 */
#ifndef PORTERD_TEXTSCAN_H
#define PORTERD_TEXTSCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "porterd/strutil.h"

#define TEXT_SHOWN_MAX 40	/* token octets quoted in messages */

static inline bool text_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Between list members and targets: white space or a comma. */
static inline bool text_is_separator(char c)
{
	return text_is_blank(c) || c == ',';
}

/* Octets no line may hold: C0 controls but tab, and DEL. */
static inline bool text_is_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static inline char *text_skip_blanks(char *s, const char *e)
{
	while (s < e && text_is_blank(*s))
		s++;
	return s;
}

/* The same, in a NUL-terminated string. */
static inline const char *text_skip_blanks_str(const char *s)
{
	while (text_is_blank(*s))
		s++;
	return s;
}

/* Lowercase s[0 .. len) in place (ASCII only, as str_lower_char). */
static inline void text_lower_span(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		s[i] = str_lower_char(s[i]);
}

/*
 * How a token is quoted in a message: at most TEXT_SHOWN_MAX octets, then
 * "...". QUOTED in the format takes SHOWN(s, len) in the arguments.
 */
#define QUOTED "'%.*s%s'"
#define SHOWN(s, len) text_shown_len(len), (s), text_shown_more(len)

static inline int text_shown_len(size_t len)
{
	return (int)(len > TEXT_SHOWN_MAX ? TEXT_SHOWN_MAX : len);
}

static inline const char *text_shown_more(size_t len)
{
	return len > TEXT_SHOWN_MAX ? "..." : "";
}

/*
 * The next word of the NUL-terminated s, words being separated by blanks:
 * its start, with *end_r just past it; NULL when only blanks are left.
 */
const char *text_next_word(const char *s, const char **end_r);

/*
 * path = s[0 .. len), resolved against base_dir when it is relative (a
 * NULL or empty base_dir leaves it as given). False when the result would
 * not fit in pathsize octets with its NUL.
 */
bool text_path_resolve(char *path, size_t pathsize, const char *base_dir,
		       const char *s, size_t len);

/*
 * A file backend's arguments: exactly one PATH, resolved as above. On
 * error -1 with "BACKEND: expected one PATH" or "BACKEND: path too long"
 * in err.
 */
int text_path_arg(const char *backend, const char *args, const char *base_dir,
		  char *path, size_t pathsize, char *err, size_t errsize);

/*
 * Lines of buf[0 .. len) that may start an entry: neither empty, nor
 * blank at the start, nor a comment. An upper bound on its entries.
 */
size_t text_count_entry_lines(const char *buf, size_t len);

#endif
