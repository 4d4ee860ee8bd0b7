/*
 * strutil — small string helpers shared by the parsers and the directory.
 */
#ifndef PORTERD_STRUTIL_H
#define PORTERD_STRUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ASCII-only case folding: locale-independent, never touches 8-bit bytes. */
static inline char str_lower_char(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* Lowercase len bytes of src into dst (dstsize >= len + 1). False if too long. */
bool str_lower_copy(char *dst, size_t dstsize, const char *src, size_t len);

/* Lowercase a NUL-terminated string in place. */
void str_lower_inplace(char *s);

/* 64-bit FNV-1a over len bytes, folding ASCII case (keys are case-insensitive). */
uint64_t str_hash_nocase(const char *s, size_t len);

/* True when a and b (lengths alen, blen) are equal ignoring ASCII case. */
bool str_eq_nocase(const char *a, size_t alen, const char *b, size_t blen);

/* True when any byte of s[0..len) has the high bit set. */
bool str_has_8bit(const char *s, size_t len);

/* Copy at most dstsize-1 bytes and NUL-terminate; returns false if cut. */
bool str_copy(char *dst, size_t dstsize, const char *src, size_t len);

/*
 * Format an error located in a file: "PATH:LINE: message", or
 * "PATH: message" when line is 0. Never overruns err. Returns -1, so a
 * parser can `return str_error_at(...)`.
 */
int str_error_at(char *err, size_t errsize, const char *path, unsigned long line,
		 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* Format a message into err (when err is not NULL and errsize > 0); never
 * overruns it. Returns -1, so a parser can `return str_error(...)`. */
int str_error(char *err, size_t errsize, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A whole number of 1 to 9 digits, all of s[0 .. len); false otherwise. */
bool str_parse_digits(const char *s, size_t len, uint64_t *v_r);

/* A time in seconds: 1 to 9 digits with an optional unit s, m or h (in
 * either case); false when s[0 .. len) is not one. */
bool str_parse_seconds(const char *s, size_t len, uint64_t *secs_r);

/*
 * Ask for huge pages under [p, p + len) where it spans whole 2 MiB pages:
 * big tables read at random cost far fewer TLB misses so. Only a hint;
 * where it is unknown or refused nothing changes.
 */
void mem_hint_huge(void *p, size_t len);

/*
 * Grow the array p (*cap elements of elem octets) to hold at least need,
 * doubling from 16; returns it, perhaps moved. For scratch space whose
 * size is bounded by its caller: out of memory aborts.
 */
void *mem_grow(void *p, size_t *cap, size_t need, size_t elem);

/* The text of errno value err in buf (thread-safe); returns buf. */
const char *str_errno(int err, char *buf, size_t size);

/*
 * Read a whole file into a NUL-terminated heap buffer. Returns 0 or an errno
 * value; *len_r gets the length without the NUL.
 */
int str_read_file(const char *path, char **buf_r, size_t *len_r);

#endif
