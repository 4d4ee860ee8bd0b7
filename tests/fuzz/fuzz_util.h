/*
 * Helpers shared by the fuzz targets: failing loudly (abort, so libFuzzer
 * saves the input), temporary directories on a tmpfs when there is one,
 * and removing what a target wrote.
 */
#ifndef PORTERD_FUZZ_UTIL_H
#define PORTERD_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Removes a target's temporary files; run at exit, and before a crash
 * that a check or a sanitizer reports (not before a plain abort() in the
 * code under test: libFuzzer's handler leaves with _Exit()). */
static void (*fuzz_cleanup_fn)(void);

void __sanitizer_set_death_callback(void (*callback)(void));

static inline void fuzz_run_cleanup(void)
{
	void (*fn)(void) = fuzz_cleanup_fn;

	fuzz_cleanup_fn = NULL;
	if (fn != NULL)
		fn();
}

static inline void fuzz_set_cleanup(void (*fn)(void))
{
	fuzz_cleanup_fn = fn;
	atexit(fuzz_run_cleanup);
	__sanitizer_set_death_callback(fuzz_run_cleanup);
}

__attribute__((format(printf, 1, 2), noreturn))
static inline void fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fuzz_run_cleanup();
	abort();
}

static inline size_t fuzz_first_difference(const char *a, size_t alen,
					   const char *b, size_t blen)
{
	size_t i = 0;

	while (i < alen && i < blen && a[i] == b[i])
		i++;
	return i;
}

/* A new directory under $FUZZ_TMPDIR, /dev/shm (tmpfs: fsync costs
 * nothing, nothing reaches the disk) or /tmp; a heap path. */
static inline char *fuzz_mkdtemp(const char *name)
{
	const char *bases[] = { getenv("FUZZ_TMPDIR"), "/dev/shm", "/tmp" };
	char path[4096];

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		struct stat st;

		if (bases[i] == NULL || bases[i][0] == '\0' ||
		    stat(bases[i], &st) < 0 || !S_ISDIR(st.st_mode) ||
		    access(bases[i], W_OK | X_OK) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/porterd-%s-XXXXXX", bases[i], name);
		if (mkdtemp(path) != NULL) {
			char *p = strdup(path);

			if (p == NULL)
				abort();
			return p;
		}
	}
	fuzz_fail("cannot make a temporary directory for %s", name);
}

/*
 * Remove everything below path (and path itself when self is true).
 * readdir() may skip entries when the directory changes under it (tmpfs
 * does), so it scans again until a scan finds nothing left.
 */
static inline void fuzz_rmtree(const char *path, int self)
{
	for (int pass = 0; pass < 64; pass++) {
		DIR *d = opendir(path);
		struct dirent *de;
		int found = 0;

		if (d == NULL)
			break;
		while ((de = readdir(d)) != NULL) {
			char sub[4096];
			struct stat st;

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			found = 1;
			snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
			if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
				fuzz_rmtree(sub, 1);
			else
				unlink(sub);
		}
		closedir(d);
		if (!found)
			break;
	}
	if (self)
		rmdir(path);
}

/* Write len bytes to path, replacing it. */
static inline void fuzz_write_file(const char *path, const void *buf, size_t len)
{
	const char *p = buf;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		fuzz_fail("open %s: %s", path, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fuzz_fail("write %s: %s", path, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) < 0)
		fuzz_fail("close %s: %s", path, strerror(errno));
}

#endif
