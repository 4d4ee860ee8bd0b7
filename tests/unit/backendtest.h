/*
 * What the directory backends' suites share: a backend's answer as the
 * one line a row states, a backend that must open or the message it
 * fails with, and the wrong rows of a table-driven test, gathered so that
 * one run shows every one of them.
 */
#ifndef PORTERD_BACKENDTEST_H
#define PORTERD_BACKENDTEST_H

#include <stdarg.h>
#include <stdbool.h>

#include "porterd/backend.h"
#include "testutil.h"

#define NROWS(rows) (sizeof(rows) / sizeof((rows)[0]))

#define BACKENDTEST_ERR_MAX 1024
#define BACKENDTEST_ANSWER_MAX 8192

/* ---- answers as lines ---- */

struct answer {
	int calls;
	char text[BACKENDTEST_ANSWER_MAX];
};

static inline void members_format(const struct dir_result *r, char *out,
				  size_t size)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < r->nmembers; i++) {
		int n = snprintf(out + len, size - len, "%s%s", i ? "," : "",
				 r->members[i]);

		ck_assert_int_ge(n, 0);
		ck_assert_uint_lt(len + (size_t)n, size);
		len += (size_t)n;
	}
}

/*
 * "user KEY name=NAME" (or name=(none)), "list KEY members=A,B",
 * "forward KEY target=T", "moved KEY target=T", "ambiguous", "notfound"
 * or "tempfail". Fields an answer must not carry for its status are
 * asserted empty.
 */
static inline void answer_done(const struct dir_result *r, void *arg)
{
	struct answer *a = arg;
	char members[BACKENDTEST_ANSWER_MAX / 2];

	a->calls++;
	if (r->status != DIR_USER)
		ck_assert_ptr_null(r->fullname);
	if (r->status != DIR_LIST) {
		ck_assert_ptr_null(r->members);
		ck_assert_uint_eq(r->nmembers, 0);
	}
	if (r->status != DIR_FORWARD && r->status != DIR_MOVED)
		ck_assert_ptr_null(r->target);
	switch (r->status) {
	case DIR_USER:
		snprintf(a->text, sizeof(a->text), "user %s name=%s", r->key,
			 r->fullname != NULL ? r->fullname : "(none)");
		break;
	case DIR_LIST:
		members_format(r, members, sizeof(members));
		snprintf(a->text, sizeof(a->text), "list %s members=%s",
			 r->key, members);
		break;
	case DIR_FORWARD:
	case DIR_MOVED:
		snprintf(a->text, sizeof(a->text), "%s %s target=%s",
			 r->status == DIR_FORWARD ? "forward" : "moved",
			 r->key, r->target);
		break;
	case DIR_AMBIGUOUS:
	case DIR_NOTFOUND:
	case DIR_TEMPFAIL:
		ck_assert_ptr_null(r->key);
		snprintf(a->text, sizeof(a->text), "%s",
			 r->status == DIR_AMBIGUOUS ? "ambiguous" :
			 r->status == DIR_NOTFOUND ? "notfound" : "tempfail");
		break;
	default:
		snprintf(a->text, sizeof(a->text), "status %d", (int)r->status);
		break;
	}
}

/* Look up and return the answer line; the callback ran exactly once. */
static inline const char *ask(const struct backend_ops *ops,
			      struct backend *be, const char *address,
			      const char *local, bool by_name, struct answer *a)
{
	struct dir_query q = { .address = address, .local = local,
			       .by_name = by_name };

	memset(a, 0, sizeof(*a));
	ops->lookup(be, &q, answer_done, a);
	ck_assert_int_eq(a->calls, 1);
	return a->text;
}

/* ---- opening ---- */

/* Open args (a relative path is taken from a directory that does not
 * exist); it must open. */
static inline struct backend *open_ok(const struct backend_ops *ops,
				      const char *args)
{
	struct backend *be = NULL;
	char err[BACKENDTEST_ERR_MAX] = "";

	ck_assert_msg(ops->open(args, "/nonexistent-base", &be, err,
				sizeof(err)) == 0, "open %s: %s", args, err);
	ck_assert_ptr_nonnull(be);
	return be;
}

/* The message open fails with, or "(opened)" when it does not fail. */
static inline const char *open_error(const struct backend_ops *ops,
				     const char *args, const char *base_dir,
				     char *err, size_t errsize)
{
	struct backend *be = (struct backend *)&be;

	err[0] = '\0';
	if (ops->open(args, base_dir, &be, err, errsize) == 0) {
		ops->close(&be);
		return "(opened)";
	}
	ck_assert_ptr_null(be);
	return err;
}

/* ---- rows that differ ---- */

struct report {
	char text[16384];
	size_t len;
	int wrong;
};

static inline void report_add(struct report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void report_add(struct report *r, const char *fmt, ...)
{
	size_t room = sizeof(r->text) - r->len;
	va_list ap;
	int n;

	r->wrong++;
	va_start(ap, fmt);
	n = vsnprintf(r->text + r->len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += (size_t)n < room ? (size_t)n : room - 1;
}

static inline void report_check(const struct report *r)
{
	ck_assert_msg(r->wrong == 0, "%d rows wrong:\n%s", r->wrong, r->text);
}

#endif
