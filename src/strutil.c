/*
 * strutil — small string helpers shared by the parsers and the directory.
 * ASCII only and locale-independent: mail addresses are compared the same
 * way whatever LC_ALL says.
 */
#include "porterd/strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

bool str_lower_copy(char *dst, size_t dstsize, const char *src, size_t len)
{
	if (len >= dstsize)
		return false;
	for (size_t i = 0; i < len; i++)
		dst[i] = str_lower_char(src[i]);
	dst[len] = '\0';
	return true;
}

void str_lower_inplace(char *s)
{
	for (; *s != '\0'; s++)
		*s = str_lower_char(*s);
}

uint64_t str_hash_nocase(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)str_lower_char(s[i]);
		h *= 1099511628211ULL;
	}
	return h;
}

bool str_eq_nocase(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (str_lower_char(a[i]) != str_lower_char(b[i]))
			return false;
	return true;
}

bool str_has_8bit(const char *s, size_t len)
{
	const uint64_t high = 0x8080808080808080ULL;
	size_t i = 0;

	/* Eight octets at a time: every command argument passes here. */
	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, s + i, 8);
		if (w & high)
			return true;
	}
	for (; i < len; i++)
		if ((unsigned char)s[i] & 0x80)
			return true;
	return false;
}

bool str_copy(char *dst, size_t dstsize, const char *src, size_t len)
{
	bool fits = len < dstsize;

	if (dstsize == 0)
		return false;
	if (!fits)
		len = dstsize - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return fits;
}

int str_error_at(char *err, size_t errsize, const char *path, unsigned long line,
		 const char *fmt, va_list ap)
{
	int n;

	if (err == NULL || errsize == 0)
		return -1;
	if (line > 0)
		n = snprintf(err, errsize, "%s:%lu: ", path, line);
	else
		n = snprintf(err, errsize, "%s: ", path);
	if (n < 0 || (size_t)n >= errsize)
		return -1;
	vsnprintf(err + n, errsize - (size_t)n, fmt, ap);
	return -1;
}

int str_error(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsize == 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
	return -1;
}

bool str_parse_digits(const char *s, size_t len, uint64_t *v_r)
{
	uint64_t n = 0;

	if (len == 0 || len > 9)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	*v_r = n;
	return true;
}

bool str_parse_seconds(const char *s, size_t len, uint64_t *secs_r)
{
	uint64_t n, unit = 1;
	size_t digits = len;

	switch (len > 0 ? str_lower_char(s[len - 1]) : 0) {
	case 's': digits--; break;
	case 'm': unit = 60; digits--; break;
	case 'h': unit = 3600; digits--; break;
	default: break;
	}
	if (!str_parse_digits(s, digits, &n))
		return false;
	*secs_r = n * unit;
	return true;
}

static int read_all(int fd, char *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return EIO; /* the file shrank while we read it */
		got += (size_t)n;
	}
	return 0;
}

void mem_hint_huge(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
	const uintptr_t huge = (uintptr_t)2 << 20;
	uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
	uintptr_t end = ((uintptr_t)p + len) & ~(huge - 1);

	if (end > start)
		(void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
	(void)p;
	(void)len;
#endif
}

const char *str_errno(int err, char *buf, size_t size)
{
	/* The XSI strerror_r: this file is built without _GNU_SOURCE. */
	if (strerror_r(err, buf, size) != 0)
		snprintf(buf, size, "errno %d", err);
	return buf;
}

int str_read_file(const char *path, char **buf_r, size_t *len_r)
{
	struct stat st;
	char *buf;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) < 0) {
		rc = errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return EINVAL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return ENOMEM;
	}
	/* Before the first touch: a large table file is read at random. */
	mem_hint_huge(buf, (size_t)st.st_size + 1);
	rc = read_all(fd, buf, (size_t)st.st_size);
	close(fd);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	buf[st.st_size] = '\0';
	*buf_r = buf;
	*len_r = (size_t)st.st_size;
	return 0;
}

void *mem_grow(void *p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;

	if (need <= *cap)
		return p;
	while (ncap < need)
		ncap *= 2;
	p = realloc(p, ncap * elem);
	if (p == NULL)
		abort();
	*cap = ncap;
	return p;
}
