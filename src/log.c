/*
 * log — one key=value line per event on stderr (or a stream of the
 * caller's choosing). It must never let client text split or forge a line:
 * everything a client sent passes through log_escape() first.
 */
#include "porterd/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

static enum log_level max_level = LOG_LEVEL_INFO;
static FILE *log_stream;

static const char *const level_names[] = {
	[LOG_LEVEL_ERR] = "err",
	[LOG_LEVEL_WARN] = "warning",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void log_init(enum log_level level, FILE *stream)
{
	max_level = level;
	log_stream = stream;
}

enum log_level log_get_level(void)
{
	return max_level;
}

void log_event(enum log_level level, const char *fmt, ...)
{
	FILE *out = log_stream != NULL ? log_stream : stderr;
	char line[1024];
	va_list ap;
	int n;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* One fputs per line keeps lines whole when stderr is shared. */
	fprintf(out, "porterd: level=%s %s\n", level_names[level], line);
	fflush(out);
}

static bool is_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '\\' && c != '"';
}

const char *log_escape(char *dst, size_t dstsize, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dstsize < 8) {
		if (dstsize > 0)
			dst[0] = '\0';
		return dst;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		size_t need = is_plain(c) ? 1 : 4;

		if (o + need + 4 > dstsize) {	/* room for "..." and NUL */
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (need == 1) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	dst[o] = '\0';
	return dst;
}
