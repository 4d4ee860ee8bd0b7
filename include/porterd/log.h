/*
 * log — one line per event, key=value, to stderr or to syslog.
 *
 * Client-supplied text never reaches a log line unescaped: log_escape()
 * turns CR, LF, control and 8-bit bytes into \xNN so a client cannot forge
 * or split log lines.
 */
#ifndef PORTERD_LOG_H
#define PORTERD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Longest escaped value log_escape() produces, including the NUL. */
#define LOG_VALUE_MAX 256
/* The longest line, prefix and newline included; longer ones are cut. */
#define LOG_LINE_MAX 1100

/* Log lines up to max_level to stream (NULL: stderr). */
void log_init(enum log_level max_level, FILE *stream);
enum log_level log_get_level(void);

/* Sends one syslog message: priority as syslog(3) takes it, text the
 * line without "porterd: " and without its newline. */
typedef void log_syslog_fn(int priority, const char *text);

/*
 * From now on send each line to syslog as a message of its own, at
 * log_syslog_priority() of its level; batching does not apply. send
 * NULL means syslog(3), after openlog("porterd", LOG_PID | LOG_NDELAY,
 * LOG_MAIL): the socket to /dev/log is opened now, so call this before
 * any chroot. Tests pass their own send. log_init() goes back to a stream.
 */
void log_use_syslog(log_syslog_fn *send);

/* LOG_ERR, LOG_WARNING, LOG_INFO or LOG_DEBUG (facility not included). */
int log_syslog_priority(enum log_level level);

/* Emit one line: "porterd: level=<lvl> " followed by the formatted text. */
void log_event(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Batching: between log_buffer_start() and log_buffer_stop(), lines logged
 * by the thread that called log_buffer_start() collect in a buffer and
 * leave together at log_flush() (or when the buffer fills), so a busy
 * event loop pays one write per loop pass, not one per event. notify(arg)
 * runs when the buffer turns non-empty, for the caller to schedule the
 * flush. Lines from other threads (delivery workers) write through at
 * once, after what is buffered, so lines are never reordered or split.
 * With syslog every line is sent at once: there is nothing to batch.
 */
void log_buffer_start(void (*notify)(void *arg), void *arg);
void log_flush(void);
void log_buffer_stop(void);

/*
 * Escape len bytes of src into dst (dstsize bytes, NUL-terminated). Printable
 * ASCII other than backslash and double quote is copied; everything else
 * becomes \xNN. Output that does not fit is cut and ends in "...".
 * Returns dst so it can be used inline in log_event() arguments.
 */
const char *log_escape(char *dst, size_t dstsize, const char *src, size_t len);

/*
 * A line built piece by piece, for the line every command logs (a
 * VRFY's): no format to interpret, constant pieces copied as the
 * compiler sees fit. What passes the longest line is cut, as by
 * log_event(). Client text goes in through log_line_escaped() only.
 */
struct log_line {
	enum log_level level;
	size_t len;
	char buf[LOG_LINE_MAX];
};

/* Start a line of level; false when level is not logged (build nothing). */
bool log_line_start(struct log_line *l, enum log_level level);
/* Escape len bytes of client text into the line, as log_escape() does. */
void log_line_escaped(struct log_line *l, const char *s, size_t len);
void log_line_uint(struct log_line *l, unsigned long long v);
/* Send the line (its newline is added). */
void log_line_end(struct log_line *l);

static inline void log_line_add(struct log_line *l, const char *s, size_t len)
{
	size_t room = sizeof(l->buf) - 1 - l->len;	/* the newline fits */

	if (len > room)
		len = room;
	memcpy(l->buf + l->len, s, len);
	l->len += len;
}

static inline void log_line_str(struct log_line *l, const char *s)
{
	log_line_add(l, s, strlen(s));
}

/* A string literal, its length known to the compiler. */
#define log_line_lit(l, lit) log_line_add((l), "" lit, sizeof(lit) - 1)

#endif
