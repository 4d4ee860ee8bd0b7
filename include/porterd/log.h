/*
 * log — one line per event, key=value, to stderr.
 *
 * Client-supplied text never reaches a log line unescaped: log_escape()
 * turns CR, LF, control and 8-bit bytes into \xNN so a client cannot forge
 * or split log lines.
 */
#ifndef PORTERD_LOG_H
#define PORTERD_LOG_H

#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Longest escaped value log_escape() produces, including the NUL. */
#define LOG_VALUE_MAX 256

void log_init(enum log_level max_level, FILE *stream);
enum log_level log_get_level(void);

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

#endif
