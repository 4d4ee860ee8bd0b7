/*
 * log — one key=value line per event on stderr (or a stream of the
 * caller's choosing), or one syslog message per line. It must never let
 * client text split or forge a line: everything a client sent passes
 * through log_escape() first.
 */
#include "porterd/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <syslog.h>

/* Lines batched before a write is forced. */
#define LOG_BATCH_SIZE (64 * 1024)

/* What every line starts with on a stream; syslog adds its own tag. */
#define LOG_PREFIX "porterd: "
#define LOG_PREFIX_LEN (sizeof(LOG_PREFIX) - 1)

static enum log_level max_level = LOG_LEVEL_INFO;
static FILE *log_stream;
/* Set before any thread but the main one exists, read-only afterwards. */
static log_syslog_fn *syslog_send;

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
	syslog_send = NULL;
}

static void send_to_syslog(int priority, const char *text)
{
	syslog(LOG_MAIL | priority, "%s", text);
}

void log_use_syslog(log_syslog_fn *send)
{
	if (send == NULL) {
		openlog("porterd", LOG_PID | LOG_NDELAY, LOG_MAIL);
		send = send_to_syslog;
	}
	syslog_send = send;
}

int log_syslog_priority(enum log_level level)
{
	static const int priorities[] = {
		[LOG_LEVEL_ERR] = LOG_ERR,
		[LOG_LEVEL_WARN] = LOG_WARNING,
		[LOG_LEVEL_INFO] = LOG_INFO,
		[LOG_LEVEL_DEBUG] = LOG_DEBUG,
	};

	return (unsigned)level < sizeof(priorities) / sizeof(priorities[0])
		? priorities[level] : LOG_ERR;
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

/* The conversions format_fast() knows; anything else goes to vsnprintf. */
static bool fast_format_ok(const char *fmt)
{
	for (const char *p = fmt; (p = strchr(p, '%')) != NULL; p++) {
		p++;
		if (*p == 'z' && p[1] == 'u')
			p++;
		else if (*p != 's' && *p != 'd' && *p != 'u' && *p != '%')
			return false;
	}
	return true;
}

static size_t put_text(char *dst, size_t room, const char *s, size_t len)
{
	if (len > room)
		len = room;
	memcpy(dst, s, len);
	return len;
}

static size_t put_unsigned(char *dst, size_t room, unsigned long long v)
{
	char digits[24];
	size_t n = sizeof(digits);

	do
		digits[--n] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	return put_text(dst, room, digits + n, sizeof(digits) - n);
}

/*
 * Lines are formatted on every command; glibc's vsnprintf was the largest
 * cost of a VRFY. This knows %s, %d, %u, %zu and %% (what porterd's
 * lines use: fast_format_ok() checks) and writes at most room bytes.
 */
static size_t format_fast(char *dst, size_t room, const char *fmt, va_list ap)
{
	size_t o = 0;

	for (const char *p = fmt; *p != '\0' && o < room; p++) {
		const char *s;

		if (*p != '%') {
			/* The literal run up to the next conversion, whole. */
			const char *q = strchr(p, '%');
			size_t run = q != NULL ? (size_t)(q - p) : strlen(p);

			o += put_text(dst + o, room - o, p, run);
			p += run - 1;
			continue;
		}
		switch (*++p) {
		case 's':
			s = va_arg(ap, const char *);
			if (s == NULL)
				s = "(null)";
			o += put_text(dst + o, room - o, s, strlen(s));
			break;
		case 'd': {
			int v = va_arg(ap, int);

			if (v < 0 && o < room)
				dst[o++] = '-';
			o += put_unsigned(dst + o, room - o,
					  v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
			break;
		}
		case 'u':
			o += put_unsigned(dst + o, room - o, va_arg(ap, unsigned));
			break;
		case 'z':
			p++;	/* %zu */
			o += put_unsigned(dst + o, room - o, va_arg(ap, size_t));
			break;
		default:	/* %% */
			dst[o++] = '%';
			break;
		}
	}
	return o;
}

void log_event(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t room = sizeof(line) - 1;	/* the newline always fits */
	va_list ap;
	size_t len;

	if (level > max_level)
		return;
	len = put_text(line, room, LOG_PREFIX "level=", LOG_PREFIX_LEN + 6);
	len += put_text(line + len, room - len, level_names[level], strlen(level_names[level]));
	line[len++] = ' ';
	va_start(ap, fmt);
	if (fast_format_ok(fmt)) {
		len += format_fast(line + len, room - len, fmt, ap);
	} else {
		int n = vsnprintf(line + len, room - len + 1, fmt, ap);

		/* A line too long for the buffer is cut, never split. */
		len = n < 0 ? len : (size_t)n > room - len ? room : len + (size_t)n;
	}
	va_end(ap);
	if (syslog_send != NULL) {
		/* syslog(3) frames messages itself and tags them "porterd[PID]" */
		line[len] = '\0';
		syslog_send(log_syslog_priority(level), line + LOG_PREFIX_LEN);
		return;
	}
	line[len++] = '\n';
	emit(line, len);
}

static bool is_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '\\' && c != '"';
}

bool log_line_start(struct log_line *l, enum log_level level)
{
	if (level > max_level)
		return false;
	l->level = level;
	l->len = 0;
	log_line_lit(l, LOG_PREFIX "level=");
	log_line_str(l, level_names[level]);
	log_line_lit(l, " ");
	return true;
}

void log_line_escaped(struct log_line *l, const char *s, size_t len)
{
	char esc[LOG_VALUE_MAX];
	size_t plain = 0;

	while (plain < len && is_plain((unsigned char)s[plain]))
		plain++;
	/* The common case, nothing to escape or cut, as log_escape() would. */
	if (plain == len && len < LOG_VALUE_MAX - 4) {
		log_line_add(l, s, len);
		return;
	}
	log_line_str(l, log_escape(esc, sizeof(esc), s, len));
}

void log_line_uint(struct log_line *l, unsigned long long v)
{
	size_t room = sizeof(l->buf) - 1 - l->len;

	l->len += put_unsigned(l->buf + l->len, room, v);
}

void log_line_end(struct log_line *l)
{
	if (syslog_send != NULL) {
		l->buf[l->len] = '\0';
		syslog_send(log_syslog_priority(l->level), l->buf + LOG_PREFIX_LEN);
		return;
	}
	l->buf[l->len++] = '\n';
	emit(l->buf, l->len);
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
