/*
 * daemon — the pidfile, the move to the background (-d), the chroot and
 * the switch from root to the configured user (see daemon.h for the
 * order main keeps).
 *
 * It must never let porterd serve with privileges it was told to give
 * up (every step is checked, and checked again after), never remove a
 * pidfile another process holds, and never touch sockets or the event
 * loop.
 */
#include "porterd/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "porterd/config.h"
#include "porterd/log.h"
#include "porterd/strutil.h"

/* Times the pidfile's name may lead to another file between open() and
 * flock() before porterd gives up (see pidfile_lock()). */
#define PIDFILE_ATTEMPTS 10
/* How long a porterd that finds the pidfile locked waits for the holder
 * to have written its pid: tries times pause. */
#define PIDFILE_READ_TRIES 50
#define PIDFILE_READ_PAUSE_NS (10 * 1000 * 1000L)
/* A pid and its newline, with room to spare. */
#define PID_TEXT_MAX 24

struct daemon_pidfile {
	int fd;			/* locked (flock) while open */
	int dirfd;		/* its directory: removal works after a chroot */
	char *name;		/* its name in dirfd */
	char *path;		/* as given, for messages */
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (errsize == 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- pidfile ---------------------------------------------------------- */

/* A pid written as a whole line, or -1: a line still being written (no
 * newline yet) is no pid at all, never part of one. */
static pid_t parse_pid(const char *s, size_t len)
{
	long pid = 0;
	size_t i;

	for (i = 0; i < len && s[i] >= '0' && s[i] <= '9' && i < 10; i++)
		pid = pid * 10 + (s[i] - '0');
	if (i == 0 || i >= len || s[i] != '\n' || pid <= 0 || pid > INT32_MAX)
		return -1;
	return (pid_t)pid;
}

static pid_t pid_from_fd(int fd)
{
	char buf[PID_TEXT_MAX];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);

	return n > 0 ? parse_pid(buf, (size_t)n) : -1;
}

pid_t daemon_pidfile_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	pid_t pid;

	if (fd < 0)
		return -1;
	pid = pid_from_fd(fd);
	close(fd);
	return pid;
}

/* The holder writes its pid right after it has locked the file; give it
 * a moment rather than report a running porterd without its pid. */
static pid_t pidfile_holder(int fd)
{
	struct timespec pause = { 0, PIDFILE_READ_PAUSE_NS };

	for (int i = 0; i < PIDFILE_READ_TRIES; i++) {
		pid_t pid = pid_from_fd(fd);

		if (pid > 0)
			return pid;
		nanosleep(&pause, NULL);
	}
	return -1;
}

static void pidfile_free(struct daemon_pidfile *pf)
{
	if (pf->fd >= 0)
		close(pf->fd);
	if (pf->dirfd >= 0)
		close(pf->dirfd);
	free(pf->name);
	free(pf->path);
	free(pf);
}

/* Split path into its directory (opened) and its last component. */
static struct daemon_pidfile *pidfile_new(const char *path, char *err,
					  size_t errsize)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash != NULL ? slash + 1 : path;
	struct daemon_pidfile *pf = calloc(1, sizeof(*pf));
	char *dir = NULL;

	if (pf == NULL) {
		fail(err, errsize, "%s: out of memory", path);
		return NULL;
	}
	pf->fd = pf->dirfd = -1;
	if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		fail(err, errsize, "%s: not a file name", path);
		goto error;
	}
	pf->path = strdup(path);
	pf->name = strdup(name);
	dir = slash == NULL ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (pf->path == NULL || pf->name == NULL || dir == NULL) {
		fail(err, errsize, "%s: out of memory", path);
		goto error;
	}
	pf->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pf->dirfd < 0) {
		fail(err, errsize, "%s: cannot open its directory: %s", path, strerror(errno));
		goto error;
	}
	free(dir);
	return pf;
error:
	free(dir);
	pidfile_free(pf);
	return NULL;
}

/* True when pf's name still leads to the file pf holds open. */
static bool pidfile_at_name(const struct daemon_pidfile *pf)
{
	struct stat held, named;

	return fstat(pf->fd, &held) == 0 &&
	       fstatat(pf->dirfd, pf->name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
	       held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/* 1: locked, and the file is the one at the name; 0: the name moved on
 * (try again); -1: an error, or another porterd holds it. */
static int pidfile_try_lock(struct daemon_pidfile *pf, char *err, size_t errsize)
{
	struct stat st;

	if (fstat(pf->fd, &st) < 0)
		return fail(err, errsize, "%s: cannot stat: %s", pf->path, strerror(errno));
	/* Never truncate a file that is also known by another name. */
	if (!S_ISREG(st.st_mode) || st.st_nlink > 1)
		return fail(err, errsize, "%s: not a regular file with one name", pf->path);
	if (flock(pf->fd, LOCK_EX | LOCK_NB) < 0) {
		pid_t pid;

		if (errno != EWOULDBLOCK)
			return fail(err, errsize, "%s: cannot lock: %s", pf->path,
				    strerror(errno));
		pid = pidfile_holder(pf->fd);
		if (pid < 0)
			return fail(err, errsize, "%s: held by running porterd (pid unknown)",
				    pf->path);
		return fail(err, errsize, "%s: held by running porterd (pid %ld)",
			    pf->path, (long)pid);
	}
	return pidfile_at_name(pf) ? 1 : 0;
}

/*
 * Open and lock the file at the name. An exiting holder removes the name
 * and then unlocks; a starter that opened the file just before may then
 * lock a file nobody can find any more, which protects nothing. So after
 * locking, check that the name still leads to the locked file, and start
 * over when it does not. On error pf->fd is closed.
 */
static int pidfile_lock(struct daemon_pidfile *pf, char *err, size_t errsize)
{
	for (int i = 0; i < PIDFILE_ATTEMPTS; i++) {
		int rc;

		/* O_NOFOLLOW: a symbolic link put in its place by someone who
		 * may write the directory must not make root open another file. */
		pf->fd = openat(pf->dirfd, pf->name,
				O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (pf->fd < 0)
			return fail(err, errsize, "%s: cannot open: %s", pf->path,
				    strerror(errno));
		rc = pidfile_try_lock(pf, err, errsize);
		if (rc > 0)
			return 0;
		close(pf->fd);
		pf->fd = -1;
		if (rc < 0)
			return -1;
	}
	return fail(err, errsize, "%s: replaced again and again while porterd "
		    "tried to lock it", pf->path);
}

/*
 * Write the pid into the locked file itself, not into a new file renamed
 * over it: the lock belongs to the file at the name, and a rename would
 * put an unlocked one there. The file is emptied first, then gets the
 * whole line in one write, then is fsynced. A reader so sees the empty
 * file or a line being written, never the tail of an older, longer pid
 * behind a new one; and a pid counts only as a whole line ending in a
 * newline (parse_pid()), so a porterd that finds the lock held waits
 * for the line rather than read part of it.
 */
static int pidfile_write_pid(struct daemon_pidfile *pf, char *err, size_t errsize)
{
	char line[PID_TEXT_MAX];
	int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());

	if (ftruncate(pf->fd, 0) < 0 ||
	    pwrite(pf->fd, line, (size_t)n, 0) != (ssize_t)n || fsync(pf->fd) < 0)
		return fail(err, errsize, "%s: cannot write: %s", pf->path,
			    strerror(errno));
	return 0;
}

int daemon_pidfile_open(const char *path, struct daemon_pidfile **pf_r,
			char *err, size_t errsize)
{
	struct daemon_pidfile *pf;

	*pf_r = NULL;
	pf = pidfile_new(path, err, errsize);
	if (pf == NULL)
		return -1;
	if (pidfile_lock(pf, err, errsize) < 0) {
		pidfile_free(pf);
		return -1;
	}
	if (pidfile_write_pid(pf, err, errsize) < 0) {
		daemon_pidfile_close(&pf);	/* it is ours: remove it */
		return -1;
	}
	*pf_r = pf;
	return 0;
}

void daemon_pidfile_close(struct daemon_pidfile **pfp)
{
	struct daemon_pidfile *pf = *pfp;
	char path[LOG_VALUE_MAX];

	if (pf == NULL)
		return;
	*pfp = NULL;
	/* Removed before it is unlocked, so no successor's file is removed. */
	if (pf->fd >= 0 && pidfile_at_name(pf) &&
	    unlinkat(pf->dirfd, pf->name, 0) < 0) {
		const char *why = strerror(errno);

		log_event(LOG_LEVEL_WARN, "event=pidfile_kept path=\"%s\" error=\"%s\"",
			  log_escape(path, sizeof(path), pf->path, strlen(pf->path)), why);
	}
	pidfile_free(pf);
}

/* ---- privileges ------------------------------------------------------- */

/* Why getpwnam() or getgrnam() found nothing: glibc leaves errno 0 or
 * sets one of these when the name is simply not there. */
static const char *lookup_failure(int e, const char *absent)
{
	if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM)
		return absent;
	return strerror(e);
}

static int resolve_user(const char *user, struct daemon_privileges *priv,
			char *err, size_t errsize)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL)
		return fail(err, errsize, "user %s: %s", user,
			    lookup_failure(errno, "no such user"));
	if (pw->pw_uid == 0)
		return fail(err, errsize, "user %s: is root; porterd serves as "
			    "an unprivileged user", user);
	priv->uid = pw->pw_uid;
	priv->gid = pw->pw_gid;
	str_copy(priv->user, sizeof(priv->user), user, strlen(user));
	return 0;
}

/* group NULL: the user's primary group, already in priv->gid. */
static int resolve_group(const char *group, struct daemon_privileges *priv,
			 char *err, size_t errsize)
{
	struct group *gr;

	errno = 0;
	gr = group != NULL ? getgrnam(group) : getgrgid(priv->gid);
	if (gr == NULL && group != NULL)
		return fail(err, errsize, "group %s: %s", group,
			    lookup_failure(errno, "no such group"));
	if (gr == NULL) {	/* a primary group without a name */
		snprintf(priv->group, sizeof(priv->group), "%lu", (unsigned long)priv->gid);
		return 0;
	}
	priv->gid = gr->gr_gid;
	str_copy(priv->group, sizeof(priv->group), gr->gr_name, strlen(gr->gr_name));
	return 0;
}

/* Not root: nothing to drop, but say so when the file asked for a user
 * this process is not. */
static void warn_not_root(const struct config *cfg)
{
	struct passwd *pw;

	if (!cfg->user_given)
		return;
	pw = getpwnam(cfg->user);
	if (pw != NULL && pw->pw_uid == geteuid())
		return;
	log_event(LOG_LEVEL_WARN, "event=privileges_kept user=%s uid=%lu "
		  "reason=not_started_as_root", cfg->user, (unsigned long)geteuid());
}

/* ---- socket activation ------------------------------------------------ */

/* A whole decimal number in [1, max], or -1. */
static long env_number(const char *name, long max)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	return errno != 0 || *end != '\0' || n < 1 || n > max ? -1 : n;
}

static bool is_listening_stream(int fd)
{
	int accepting = 0, type = 0;
	socklen_t len = sizeof(accepting), tlen = sizeof(type);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 &&
	       accepting && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
	       type == SOCK_STREAM;
}

int daemon_listen_fds(char *err, size_t errsize)
{
	const char *fds = getenv("LISTEN_FDS");
	long pid = env_number("LISTEN_PID", (long)INT32_MAX);
	long n = env_number("LISTEN_FDS", CONFIG_LISTEN_MAX);

	if (fds == NULL)
		return 0;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (pid != (long)getpid())
		return 0;	/* meant for another process */
	if (n < 0) {
		snprintf(err, errsize, "LISTEN_FDS=%s: not a number of sockets from 1 to %d",
			 fds, CONFIG_LISTEN_MAX);
		return -1;
	}
	for (int fd = DAEMON_LISTEN_FDS_START; fd < DAEMON_LISTEN_FDS_START + n; fd++) {
		int fl = fcntl(fd, F_GETFL);

		if (!is_listening_stream(fd) || fl < 0 ||
		    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
		    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			snprintf(err, errsize, "socket activation: descriptor %d is not "
				 "a listening stream socket", fd);
			return -1;
		}
	}
	return (int)n;
}

int daemon_privileges_prepare(const struct config *cfg,
			      struct daemon_privileges *priv_r,
			      char *err, size_t errsize)
{
	memset(priv_r, 0, sizeof(*priv_r));
	priv_r->chroot_dir = cfg->chroot_dir;
	/* localtime_r() reads /etc/localtime on first use, which the chroot
	 * would hide: the dates of Received: would turn to UTC. */
	tzset();
	if (geteuid() != 0) {
		warn_not_root(cfg);
		return 0;
	}
	priv_r->drop = true;
	if (resolve_user(cfg->user, priv_r, err, errsize) < 0)
		return -1;
	return resolve_group(cfg->group, priv_r, err, errsize);
}

static int enter_chroot(const char *dir, char *err, size_t errsize)
{
	if (chroot(dir) < 0)
		return fail(err, errsize, "chroot %s: %s", dir, strerror(errno));
	if (chdir("/") < 0)
		return fail(err, errsize, "chroot %s: chdir /: %s", dir, strerror(errno));
	return 0;
}

/*
 * Groups first: once the uid is not 0, setgroups() and setgid() are
 * refused. The kernel keeps credentials per thread, but glibc applies
 * setgroups(), setgid() and setuid() to every thread of the process (it
 * signals each one to make the same call, nptl's "setxid"), so the
 * delivery workers that server_new() started before are switched too;
 * the integration test reads the ids of every task in /proc.
 */
static int switch_ids(const struct daemon_privileges *priv, char *err,
		      size_t errsize)
{
	if (setgroups(1, &priv->gid) < 0)
		return fail(err, errsize, "setgroups(%s): %s", priv->group, strerror(errno));
	if (setgid(priv->gid) < 0)
		return fail(err, errsize, "setgid(%s): %s", priv->group, strerror(errno));
	if (setuid(priv->uid) < 0)
		return fail(err, errsize, "setuid(%s): %s", priv->user, strerror(errno));
	return 0;
}

static int verify_ids(const struct daemon_privileges *priv, char *err,
		      size_t errsize)
{
	gid_t groups[2];
	int n = getgroups(2, groups);

	if (getuid() != priv->uid || geteuid() != priv->uid ||
	    getgid() != priv->gid || getegid() != priv->gid)
		return fail(err, errsize, "after switching to %s:%s the ids are "
			    "uid %lu/%lu gid %lu/%lu", priv->user, priv->group,
			    (unsigned long)getuid(), (unsigned long)geteuid(),
			    (unsigned long)getgid(), (unsigned long)getegid());
	if (n != 1 || groups[0] != priv->gid)
		return fail(err, errsize, "after switching to %s:%s the process "
			    "has other supplementary groups", priv->user, priv->group);
	if (setuid(0) == 0)
		return fail(err, errsize, "after switching to %s:%s setuid(0) still "
			    "succeeds", priv->user, priv->group);
	return 0;
}

int daemon_privileges_drop(const struct daemon_privileges *priv,
			   char *err, size_t errsize)
{
	if (priv->chroot_dir != NULL && enter_chroot(priv->chroot_dir, err, errsize) < 0)
		return -1;
	if (!priv->drop)
		return 0;
	if (switch_ids(priv, err, errsize) < 0 || verify_ids(priv, err, errsize) < 0)
		return -1;
	log_event(LOG_LEVEL_INFO, "event=privileges user=%s uid=%lu group=%s gid=%lu chroot=%s",
		  priv->user, (unsigned long)priv->uid, priv->group,
		  (unsigned long)priv->gid, priv->chroot_dir != NULL ? priv->chroot_dir : "none");
	return 0;
}

/* ---- background ------------------------------------------------------- */

/*
 * The invoking process: the first child exits as soon as it has forked
 * the daemon; the daemon writes one byte when it serves, and the pipe
 * reaches end of file without it when the daemon exits first (its error
 * is already on the stderr the two share).
 */
static int wait_for_daemon(int fd, pid_t child)
{
	ssize_t n;
	char c;
	int status;

	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : 1;
}

/* In the first child: a new session without a terminal, then the daemon
 * as a child that is no session leader, so it can never gain a
 * controlling terminal by opening one. */
static void leave_session(void)
{
	pid_t pid;

	if (setsid() < 0) {
		fprintf(stderr, "porterd: setsid: %s\n", strerror(errno));
		_exit(1);
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "porterd: fork: %s\n", strerror(errno));
		_exit(1);
	}
	if (pid > 0)
		_exit(0);
}

/* chdir("/") so no file system stays busy; stdin and stdout to
 * /dev/null now, stderr at daemon_ready(): until then it carries start
 * errors to whoever started porterd. /dev/null stays open for that, as
 * it may not exist inside a chroot. */
static int detach_stdio(struct daemon_ready *ready, char *err, size_t errsize)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null < 0)
		return fail(err, errsize, "/dev/null: %s", strerror(errno));
	ready->null_fd = null;
	if (chdir("/") < 0)
		return fail(err, errsize, "chdir /: %s", strerror(errno));
	if (dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0)
		return fail(err, errsize, "dup2 /dev/null: %s", strerror(errno));
	return 0;
}

int daemon_background(struct daemon_ready *ready, char *err, size_t errsize)
{
	int fds[2];
	pid_t pid;

	ready->fd = ready->null_fd = -1;
	fflush(NULL);	/* nothing buffered is written twice */
	if (pipe(fds) < 0)
		return fail(err, errsize, "pipe: %s", strerror(errno));
	(void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	(void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return fail(err, errsize, "fork: %s", strerror(errno));
	}
	if (pid > 0) {
		close(fds[1]);
		/* _exit: what this process loaded lives on in the daemon */
		_exit(wait_for_daemon(fds[0], pid));
	}
	close(fds[0]);
	leave_session();
	ready->fd = fds[1];
	return detach_stdio(ready, err, errsize);
}

void daemon_ready(struct daemon_ready *ready)
{
	if (ready->fd < 0)
		return;
	fflush(stderr);
	if (ready->null_fd >= 0) {
		(void)dup2(ready->null_fd, STDERR_FILENO);
		close(ready->null_fd);
		ready->null_fd = -1;
	}
	if (write(ready->fd, "R", 1) != 1) {
		/* the waiting process is gone: there is nobody to tell */
	}
	close(ready->fd);
	ready->fd = -1;
}

/* ---- systemd notification ------------------------------------------- */

void daemon_notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_event(LOG_LEVEL_WARN, "event=notify_failed error=\"%s\"", strerror(-rc));
#else
	(void)state;
#endif
}

/* systemd 253's Type=notify-reload wants the time the reload began. */
void daemon_notify_reloading(void)
{
	struct timespec ts;
	char state[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		 (unsigned long long)ts.tv_sec * 1000000ULL +
		 (unsigned long long)ts.tv_nsec / 1000);
	daemon_notify(state);
}
