/*
 * Helpers shared by the Check suites: a reply sink that captures what a
 * module sends, and temporary files for fixtures.
 */
#ifndef PORTERD_TESTUTIL_H
#define PORTERD_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "porterd/reply.h"

struct capture {
	char buf[1 << 16];
	size_t len;
};

static inline void capture_write(void *arg, const char *data, size_t len)
{
	struct capture *c = arg;

	ck_assert_msg(c->len + len < sizeof(c->buf), "capture overflow");
	memcpy(c->buf + c->len, data, len);
	c->len += len;
	c->buf[c->len] = '\0';
}

static inline struct reply_sink capture_sink(struct capture *c)
{
	c->len = 0;
	c->buf[0] = '\0';
	return (struct reply_sink){ .write = capture_write, .arg = c };
}

/* Take what was captured so far as a string, and start afresh. */
static inline const char *capture_take(struct capture *c, char *out, size_t outsize)
{
	snprintf(out, outsize, "%s", c->buf);
	c->len = 0;
	c->buf[0] = '\0';
	return out;
}

/* Write text to a new temporary file (suffix lets a test name it); returns
 * a heap path the caller unlinks and frees. */
static inline char *write_temp_file(const char *text)
{
	char *path = strdup("/tmp/porterd-test-XXXXXX");
	int fd;

	ck_assert_ptr_nonnull(path);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* Run every test of s; the exit status says whether all passed. */
static inline int testutil_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
