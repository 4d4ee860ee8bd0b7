/*
 * Helpers shared by the Check suites: a reply sink that captures what a
 * module sends, temporary files and directories for fixtures, and the
 * log captured while a test runs.
 */
#ifndef PORTERD_TESTUTIL_H
#define PORTERD_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "porterd/log.h"
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

/* Write len octets of data (NULs too) to a new temporary file; returns a
 * heap path the caller unlinks and frees. */
static inline char *write_temp_bytes(const char *data, size_t len)
{
	char *path = strdup("/tmp/porterd-test-XXXXXX");
	int fd;

	ck_assert_ptr_nonnull(path);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

/* The same for text. */
static inline char *write_temp_file(const char *text)
{
	return write_temp_bytes(text, strlen(text));
}

/* A new temporary directory /tmp/porterd-WHAT-XXXXXX, its path in dir. */
static inline void temp_dir_make(char dir[64], const char *what)
{
	snprintf(dir, 64, "/tmp/porterd-%s-XXXXXX", what);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Remove dir and everything in it. */
static inline void temp_dir_remove(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Write text to dir/name; returns path, where its path goes. */
static inline const char *temp_dir_write(const char *dir, const char *name,
					 const char *text, char *path,
					 size_t pathsize)
{
	FILE *f;

	ck_assert_int_lt(snprintf(path, pathsize, "%s/%s", dir, name),
			 (int)pathsize);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

/* Log at level into a temporary file from now on: what log_capture_read()
 * gives back. */
static inline FILE *log_capture_open(enum log_level level)
{
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	log_init(level, f);
	return f;
}

/* Back to errors only, on stderr; what was logged into f since
 * log_capture_open(), as a string in out. Closes f. */
static inline const char *log_capture_read(FILE *f, char *out, size_t size)
{
	size_t n;

	log_init(LOG_LEVEL_ERR, stderr);
	ck_assert_int_eq(fflush(f), 0);
	rewind(f);
	n = fread(out, 1, size - 1, f);
	out[n] = '\0';
	fclose(f);
	return out;
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
