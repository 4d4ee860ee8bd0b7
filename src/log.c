/*
 * log — one key=value line per event on stderr (or a stream of the
 * caller's choosing). It must never let client text split or forge a line:
 * everything a client sent passes through log_escape() first.
 */
#include "porterd/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

/* The longest line, prefix and newline included; longer ones are cut. */
#define LOG_LINE_MAX 1100
/* Lines batched before a write is forced. */
#define LOG_BATCH_SIZE (64 * 1024)

static enum log_level max_level = LOG_LEVEL_INFO;
static FILE *log_stream;

static struct {
	pthread_mutex_t lock;
	bool on;
	pthread_t owner;		/* the thread whose lines are batched */
	void (*notify)(void *arg);
	void *notify_arg;
	size_t len;
	char buf[LOG_BATCH_SIZE];
} batch = { .lock = PTHREAD_MUTEX_INITIALIZER };

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

/* Caller holds batch.lock. */
static void batch_write_out(void)
{
	FILE *out = log_stream != NULL ? log_stream : stderr;

	if (batch.len > 0) {
		(void)fwrite(batch.buf, 1, batch.len, out);
		batch.len = 0;
	}
	fflush(out);
}

void log_buffer_start(void (*notify)(void *arg), void *arg)
{
	pthread_mutex_lock(&batch.lock);
	batch.owner = pthread_self();
	batch.on = true;
	batch.notify = notify;
	batch.notify_arg = arg;
	pthread_mutex_unlock(&batch.lock);
}

void log_flush(void)
{
	pthread_mutex_lock(&batch.lock);
	batch_write_out();
	pthread_mutex_unlock(&batch.lock);
}

void log_buffer_stop(void)
{
	pthread_mutex_lock(&batch.lock);
	batch_write_out();
	batch.on = false;
	batch.notify = NULL;
	pthread_mutex_unlock(&batch.lock);
}

/* One line, whole: buffered for the batching thread, else written now. */
static void emit(const char *line, size_t len)
{
	void (*notify)(void *) = NULL;
	void *arg = NULL;

	pthread_mutex_lock(&batch.lock);
	if (batch.on && pthread_equal(batch.owner, pthread_self())) {
		if (len > sizeof(batch.buf) - batch.len)
			batch_write_out();
		if (batch.len == 0) {
			notify = batch.notify;
			arg = batch.notify_arg;
		}
		memcpy(batch.buf + batch.len, line, len);
		batch.len += len;
	} else {
		FILE *out = log_stream != NULL ? log_stream : stderr;

		if (batch.len > 0)
			(void)fwrite(batch.buf, 1, batch.len, out);
		batch.len = 0;
		(void)fwrite(line, 1, len, out);
		fflush(out);
	}
	pthread_mutex_unlock(&batch.lock);
	if (notify != NULL)
		notify(arg);
}

void log_event(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	int head, n;
	size_t len;

	if (level > max_level)
		return;
	head = snprintf(line, sizeof(line), "porterd: level=%s ", level_names[level]);
	va_start(ap, fmt);
	n = vsnprintf(line + head, sizeof(line) - (size_t)head - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* A line too long for the buffer is cut, never split. */
	len = (size_t)head + (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	emit(line, len);
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
