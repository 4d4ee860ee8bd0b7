/*
 * delivery — durable Maildir delivery (maildir(5) as qmail defines it).
 *
 * Each recipient's copy is written to DIR/tmp, fsynced, linked into
 * DIR/new, and DIR/new is fsynced; only when every copy is durable does
 * the job succeed. Any failure removes what it wrote, so no partial
 * message is ever visible in new/. The disk work runs on worker threads;
 * completions come back to the event loop, so a slow disk never stalls
 * other sessions.
 */
#ifndef PORTERD_DELIVERY_H
#define PORTERD_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct delivery;
struct delivery_job;

enum delivery_status {
	DELIVERY_OK,		/* 250 2.0.0 */
	DELIVERY_TEMPFAIL,	/* 451 4.3.0: permission, I/O error, bad path */
	DELIVERY_NOSPACE,	/* 452 4.3.1: ENOSPC or EDQUOT */
};

typedef void delivery_done_fn(enum delivery_status st, void *arg);

/*
 * template: the Maildir of a recipient, "%u" its local part, "%d" its
 * domain (both lowercase), "%%" a percent sign, e.g. "/var/mail/%d/%u".
 * A local part or domain that would leave its path component ("/", "."
 * or ".." or a leading ".", a NUL) fails that job with DELIVERY_TEMPFAIL.
 * Directories are created (mode 0700) on first delivery.
 *
 * base NULL: jobs run synchronously inside delivery_submit() (unit tests
 * and -t); otherwise on `workers` threads (>= 1) with completions
 * delivered on base's loop.
 */
struct delivery *delivery_new(struct event_base *base, const char *template,
			      unsigned workers);

/* Wait for running jobs, then free; pending callbacks are not called. */
void delivery_free(struct delivery **d);

/*
 * A job: one message for one or more recipients (distinct, each with a
 * domain). It copies the id, return path, recipients and header it is
 * given; delivery_job_set_body() takes ownership of a malloc'd body.
 * A job handle is invalid once its done has run; delivery_free() must not
 * be called from a done callback.
 *   id           the queue id, for the log lines (the file names follow
 *                maildir(5): time, microseconds, pid, counter, host)
 *   return_path  the envelope sender; "" for the null path
 */
struct delivery_job *delivery_job_new(const char *id, const char *return_path);
/* Returns false (and changes nothing) when out of memory. */
bool delivery_job_add_rcpt(struct delivery_job *job, const char *local,
			   const char *domain);
/* Text written before the body, e.g. the Received: header; copied. */
bool delivery_job_set_header(struct delivery_job *job, const char *text,
			     size_t len);
void delivery_job_set_body(struct delivery_job *job, char *body, size_t len);
/* The Maildir template for this job instead of delivery_new()'s (a
 * session keeps the config it began with across a reload); copied.
 * Returns false for an invalid template or out of memory. */
bool delivery_job_set_maildir(struct delivery_job *job, const char *template);
void delivery_job_free(struct delivery_job **job);

/*
 * Deliver job (ownership passes to d): every file starts with
 * "Return-Path: <return_path>\r\n", then the header text, then the body.
 * done runs exactly once, now (base NULL) or later on the loop, unless
 * the job is cancelled first. Returns a handle for delivery_cancel(), or
 * NULL when done already ran.
 */
struct delivery_job *delivery_submit(struct delivery *d,
				     struct delivery_job *job,
				     delivery_done_fn *done, void *arg);

/* done will not run. The message is still delivered if already under way:
 * the client was never told 250, and SMTP allows a duplicate, never a
 * loss. */
void delivery_cancel(struct delivery_job *job);

#endif
