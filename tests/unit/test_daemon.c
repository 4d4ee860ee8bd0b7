/*
 * test_daemon — the pidfile (create, refuse while another live process
 * holds it, take over what a dead one left, remove only its own), the
 * privilege helpers (as root: resolve names, chroot and switch ids in a
 * child, every thread with it; as anyone: the warning when not root) and
 * the background start's handshake with the waiting process.
 *
 * Whatever changes the process for good (chroot, ids, sessions) runs in
 * a child of the test, which reports through its exit status and leaves
 * with _exit(): nothing of it may outlive the test.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "porterd/config.h"
#include "porterd/daemon.h"
#include "porterd/log.h"

#define BASE "hostname mx.example.org\ndirectory table t\n"

/* ---- helpers ---------------------------------------------------------- */

struct tmpdir {
	char path[64];
	char file[128];		/* path/porterd.pid */
};

static void tmpdir_make(struct tmpdir *t)
{
	snprintf(t->path, sizeof(t->path), "/tmp/porterd-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(t->path));
	/* a child that switched to nobody must still get in */
	ck_assert_int_eq(chmod(t->path, 0755), 0);
	snprintf(t->file, sizeof(t->file), "%s/porterd.pid", t->path);
}

/* Remove what a test left in its directory (one level), then it. */
static void tmpdir_remove(struct tmpdir *t)
{
	static const char *const names[] = { "porterd.pid", "other", "marker",
					     "report", "mail", NULL };
	char p[256];

	for (size_t i = 0; names[i] != NULL; i++) {
		snprintf(p, sizeof(p), "%s/%s", t->path, names[i]);
		if (unlink(p) < 0)
			rmdir(p);
	}
	ck_assert_int_eq(rmdir(t->path), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

static const char *read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* The status a child ended with: its exit code, or 100 + a signal. */
static int wait_child(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

static struct config *parse(const char *text)
{
	struct config *cfg;
	char err[512];

	ck_assert_msg(config_parse(text, strlen(text), "/etc/porterd/porterd.conf", &cfg,
				   err, sizeof(err)) == 0, "%s", err);
	return cfg;
}

static bool have_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");

	return pw != NULL && pw->pw_uid == 65534 && getgrnam("nogroup") != NULL &&
	       getgrnam("nogroup")->gr_gid == 65534;
}

/* Open the pidfile at path: it must hold this process's pid and nothing
 * else; close it: it must be gone. */
static void pidfile_cycle(const char *path)
{
	struct daemon_pidfile *pf = NULL;
	char err[512], want[64], buf[128];

	ck_assert_msg(daemon_pidfile_open(path, &pf, err, sizeof(err)) == 0, "%s", err);
	ck_assert_ptr_nonnull(pf);
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	ck_assert_str_eq(read_file(path, buf, sizeof(buf)), want);
	ck_assert_int_eq(daemon_pidfile_read(path), getpid());
	daemon_pidfile_close(&pf);
	ck_assert_ptr_null(pf);
	ck_assert(!exists(path));
}

/* Tests that need root (and Debian's nobody and nogroup) say so and pass. */
static bool skip_unless_root(const char *what)
{
	if (geteuid() == 0 && have_nobody())
		return false;
	fprintf(stderr, "test_daemon: %s skipped: needs root and nobody:nogroup\n", what);
	return true;
}

/* ---- pidfile ---------------------------------------------------------- */

START_TEST(test_pidfile_create_and_remove)
{
	struct daemon_pidfile *pf = NULL;
	struct tmpdir t;
	char err[512];
	struct stat st;

	tmpdir_make(&t);
	pidfile_cycle(t.file);
	umask(022);
	ck_assert_msg(daemon_pidfile_open(t.file, &pf, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(stat(t.file, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0644);	/* anyone may read it */
	daemon_pidfile_close(&pf);
	daemon_pidfile_close(&pf);	/* NULL is fine */
	tmpdir_remove(&t);
}
END_TEST

/* A child that holds the pidfile (or only its lock, with write_pid
 * false) until its pipe closes; returns its pid once it holds it. */
static pid_t holder_start(const char *path, bool write_pid, int *release_r)
{
	int ready[2], release[2];
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(release), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct daemon_pidfile *pf;
		char err[512];
		int fd;

		close(ready[0]);
		close(release[1]);
		if (write_pid) {
			if (daemon_pidfile_open(path, &pf, err, sizeof(err)) < 0)
				_exit(2);
		} else {
			fd = open(path, O_RDWR | O_CREAT, 0644);
			if (fd < 0 || flock(fd, LOCK_EX) < 0)
				_exit(3);
		}
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		if (read(release[0], &c, 1) < 0)	/* until the test lets go */
			_exit(5);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	*release_r = release[1];
	return pid;
}

START_TEST(test_pidfile_held_by_live_process)
{
	struct daemon_pidfile *pf = (struct daemon_pidfile *)&pf;
	struct tmpdir t;
	char err[512], want[512];
	int release;
	pid_t holder;

	tmpdir_make(&t);
	holder = holder_start(t.file, true, &release);
	ck_assert_int_eq(daemon_pidfile_open(t.file, &pf, err, sizeof(err)), -1);
	ck_assert_ptr_null(pf);
	snprintf(want, sizeof(want), "%s: held by running porterd (pid %ld)", t.file,
		 (long)holder);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(daemon_pidfile_read(t.file), holder);	/* untouched */

	/* the holder is killed: the file it leaves is taken over */
	ck_assert_int_eq(kill(holder, SIGKILL), 0);
	ck_assert_int_eq(wait_child(holder), 100 + SIGKILL);
	close(release);
	ck_assert(exists(t.file));
	pidfile_cycle(t.file);
	tmpdir_remove(&t);
}
END_TEST

/* A holder that has locked but not yet written: the pid is not known,
 * and porterd says so rather than read a part of it. */
START_TEST(test_pidfile_held_without_pid)
{
	struct daemon_pidfile *pf;
	struct tmpdir t;
	char err[512], want[512];
	int release;
	pid_t holder;

	tmpdir_make(&t);
	holder = holder_start(t.file, false, &release);
	ck_assert_int_eq(daemon_pidfile_open(t.file, &pf, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: held by running porterd (pid unknown)", t.file);
	ck_assert_str_eq(err, want);
	close(release);
	ck_assert_int_eq(wait_child(holder), 0);
	tmpdir_remove(&t);
}
END_TEST

/* What a dead process (or anyone) left: a longer pid, junk, nothing. */
static const char *const stale_rows[] = {
	"4194303\n",
	"99999999999999999999 and more junk\n",
	"",
	"12",
};

START_TEST(test_pidfile_stale_taken_over)
{
	struct tmpdir t;

	tmpdir_make(&t);
	write_file(t.file, stale_rows[_i]);
	pidfile_cycle(t.file);
	tmpdir_remove(&t);
}
END_TEST

/* Another file now at the name (someone replaced it): it is not ours,
 * so it stays. */
START_TEST(test_pidfile_removes_only_its_own)
{
	struct daemon_pidfile *pf;
	struct tmpdir t;
	char err[512], other[160], buf[64];

	tmpdir_make(&t);
	ck_assert_msg(daemon_pidfile_open(t.file, &pf, err, sizeof(err)) == 0, "%s", err);
	snprintf(other, sizeof(other), "%s/other", t.path);
	write_file(other, "1\n");
	ck_assert_int_eq(rename(other, t.file), 0);
	daemon_pidfile_close(&pf);
	ck_assert_str_eq(read_file(t.file, buf, sizeof(buf)), "1\n");
	ck_assert_int_eq(unlink(t.file), 0);
	tmpdir_remove(&t);
}
END_TEST

/* Removal goes through the directory it was opened in, so leaving that
 * directory (as a chroot does) changes nothing. */
START_TEST(test_pidfile_relative_path_after_chdir)
{
	struct daemon_pidfile *pf;
	struct tmpdir t;
	char err[512], cwd[4096];

	tmpdir_make(&t);
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(t.path), 0);
	ck_assert_msg(daemon_pidfile_open("porterd.pid", &pf, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(chdir("/"), 0);
	daemon_pidfile_close(&pf);
	ck_assert_int_eq(chdir(cwd), 0);
	ck_assert(!exists(t.file));
	tmpdir_remove(&t);
}
END_TEST

START_TEST(test_pidfile_refuses_links)
{
	struct daemon_pidfile *pf;
	struct tmpdir t;
	char err[512], want[512], other[160], text[64];

	tmpdir_make(&t);
	snprintf(other, sizeof(other), "%s/other", t.path);
	write_file(other, "precious\n");

	/* a symbolic link is never followed */
	ck_assert_int_eq(symlink(other, t.file), 0);
	ck_assert_int_eq(daemon_pidfile_open(t.file, &pf, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot open: %s", t.file, strerror(ELOOP));
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(unlink(t.file), 0);

	/* a file with a second name is never truncated */
	ck_assert_int_eq(link(other, t.file), 0);
	ck_assert_int_eq(daemon_pidfile_open(t.file, &pf, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: not a regular file with one name", t.file);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(unlink(t.file), 0);

	/* nor is anything but a regular file */
	ck_assert_int_eq(mkdir(t.file, 0700), 0);
	ck_assert_int_eq(daemon_pidfile_open(t.file, &pf, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, t.file));
	ck_assert_int_eq(rmdir(t.file), 0);

	ck_assert_str_eq(read_file(other, text, sizeof(text)), "precious\n");
	tmpdir_remove(&t);
}
END_TEST

static const struct {
	const char *path;
	const char *err;
} pidfile_err_rows[] = {
	{ "/nonexistent/dir/porterd.pid",
	  "/nonexistent/dir/porterd.pid: cannot open its directory: No such file or directory" },
	{ "/tmp/", "/tmp/: not a file name" },
	{ "/tmp/..", "/tmp/..: not a file name" },
	{ "", ": not a file name" },
};

START_TEST(test_pidfile_errors)
{
	struct daemon_pidfile *pf = (struct daemon_pidfile *)&pf;
	char err[512];

	ck_assert_int_eq(daemon_pidfile_open(pidfile_err_rows[_i].path, &pf, err,
					     sizeof(err)), -1);
	ck_assert_ptr_null(pf);
	ck_assert_str_eq(err, pidfile_err_rows[_i].err);
}
END_TEST

static const struct {
	const char *text;
	pid_t pid;
} read_rows[] = {
	{ "123\n", 123 },
	{ "123\nrest of an older line\n", 123 },
	{ "123", -1 },		/* still being written */
	{ "", -1 },
	{ "0\n", -1 },
	{ "-5\n", -1 },
	{ "12x\n", -1 },
	{ "99999999999\n", -1 },
};

START_TEST(test_pidfile_read)
{
	struct tmpdir t;

	tmpdir_make(&t);
	ck_assert_int_eq(daemon_pidfile_read(t.file), -1);	/* no file */
	write_file(t.file, read_rows[_i].text);
	ck_assert_int_eq(daemon_pidfile_read(t.file), read_rows[_i].pid);
	ck_assert_int_eq(unlink(t.file), 0);
	tmpdir_remove(&t);
}
END_TEST

/* ---- privileges: names (root) ----------------------------------------- */

static const struct {
	const char *text;
	const char *err;	/* NULL: resolves to nobody:nogroup */
} resolve_rows[] = {
	{ BASE "user nobody\ngroup nogroup\n", NULL },
	{ BASE "user nobody\n", NULL },		/* the primary group */
	{ BASE "user no-such-user-x\n", "user no-such-user-x: no such user" },
	{ BASE "user nobody\ngroup no-such-group-x\n", "group no-such-group-x: no such group" },
	{ BASE "user root\n", "user root: is root; porterd serves as an unprivileged user" },
};

START_TEST(test_privileges_prepare_as_root)
{
	struct daemon_privileges priv;
	struct config *cfg;
	char err[512] = "";
	int rc;

	if (skip_unless_root("test_privileges_prepare_as_root"))
		return;
	cfg = parse(resolve_rows[_i].text);
	rc = daemon_privileges_prepare(cfg, &priv, err, sizeof(err));
	if (resolve_rows[_i].err != NULL) {
		ck_assert_int_eq(rc, -1);
		ck_assert_str_eq(err, resolve_rows[_i].err);
	} else {
		ck_assert_msg(rc == 0, "%s", err);
		ck_assert(priv.drop);
		ck_assert_uint_eq(priv.uid, 65534);
		ck_assert_uint_eq(priv.gid, 65534);
		ck_assert_str_eq(priv.user, "nobody");
		ck_assert_str_eq(priv.group, "nogroup");
		ck_assert_ptr_null(priv.chroot_dir);
	}
	config_unref(&cfg);
}
END_TEST

/* ---- privileges: the drop (root, in a child) -------------------------- */

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t probe_cond = PTHREAD_COND_INITIALIZER;
static int probe_stage;		/* 1: ids switched; 2: thread checked */
static uid_t probe_uid;
static gid_t probe_gid;

/* A thread started before the drop, like a delivery worker: once told,
 * it reads its own ids (the kernel keeps them per thread). */
static void *probe_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&probe_lock);
	while (probe_stage < 1)
		pthread_cond_wait(&probe_cond, &probe_lock);
	probe_uid = getuid();
	probe_gid = getegid();
	probe_stage = 2;
	pthread_cond_broadcast(&probe_cond);
	pthread_mutex_unlock(&probe_lock);
	return NULL;
}

/* In the child: each check its own exit code. */
static int drop_in_child(const char *text)
{
	struct daemon_privileges priv;
	struct config *cfg = parse(text);
	char err[512];
	gid_t groups[4];
	pthread_t t;

	log_init(LOG_LEVEL_WARN, NULL);	/* not the line of the drop */
	if (pthread_create(&t, NULL, probe_thread, NULL) != 0)
		return 10;
	if (daemon_privileges_prepare(cfg, &priv, err, sizeof(err)) < 0 ||
	    daemon_privileges_drop(&priv, err, sizeof(err)) < 0) {
		fprintf(stderr, "test_daemon: %s\n", err);
		return 11;
	}
	if (getuid() != 65534 || geteuid() != 65534 || getgid() != 65534 || getegid() != 65534)
		return 12;
	if (getgroups(4, groups) != 1 || groups[0] != 65534)
		return 13;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return 14;
	if (access("/marker", F_OK) != 0)	/* inside the chroot */
		return 15;
	pthread_mutex_lock(&probe_lock);
	probe_stage = 1;
	pthread_cond_broadcast(&probe_cond);
	while (probe_stage < 2)
		pthread_cond_wait(&probe_cond, &probe_lock);
	pthread_mutex_unlock(&probe_lock);
	pthread_join(t, NULL);
	return probe_uid == 65534 && probe_gid == 65534 ? 0 : 16;
}

START_TEST(test_privileges_drop_with_chroot)
{
	struct tmpdir t;
	char text[1024], marker[160];
	pid_t pid;

	if (skip_unless_root("test_privileges_drop_with_chroot"))
		return;
	tmpdir_make(&t);
	snprintf(marker, sizeof(marker), "%s/marker", t.path);
	write_file(marker, "");
	snprintf(text, sizeof(text), BASE "user nobody\ngroup nogroup\nchroot %s\n"
		 "maildir %s/mail/%%d/%%u\n", t.path, t.path);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(drop_in_child(text));	/* _exit: nothing of it runs on */
	ck_assert_int_eq(wait_child(pid), 0);
	tmpdir_remove(&t);
}
END_TEST

/* A chroot that cannot be entered stops the drop before any id changes. */
START_TEST(test_privileges_bad_chroot)
{
	struct daemon_privileges priv;
	struct config *cfg;
	char err[512];

	if (skip_unless_root("test_privileges_bad_chroot"))
		return;
	cfg = parse(BASE "user nobody\nchroot /nonexistent/jail\n"
		    "maildir /nonexistent/jail/%u\n");
	ck_assert_int_eq(daemon_privileges_prepare(cfg, &priv, err, sizeof(err)), 0);
	ck_assert_int_eq(daemon_privileges_drop(&priv, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "chroot /nonexistent/jail: No such file or directory");
	ck_assert_uint_eq(geteuid(), 0);
	config_unref(&cfg);
}
END_TEST

/* ---- privileges: not started as root ------------------------------------ */

static const struct {
	const char *text;
	bool warns;
} not_root_rows[] = {
	{ BASE, false },			/* the default user: no word */
	{ BASE "user nobody\n", false },	/* the user it runs as */
	{ BASE "user daemon\n", true },
	{ BASE "user no-such-user-x\n", true },
};

/* In a child that is not root (nobody, when the test runs as root):
 * nothing to drop, and a warning when the file named another user. */
static int not_root_in_child(const char *text, FILE *log, bool warns)
{
	struct daemon_privileges priv;
	struct config *cfg = parse(text);
	char err[512], line[512] = "", want[256];

	if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
		return 20;
	/* a test run by someone else: nobody is not who it runs as */
	if (strcmp(cfg->user, "nobody") == 0 && geteuid() != 65534)
		warns = true;
	log_init(LOG_LEVEL_INFO, log);
	if (daemon_privileges_prepare(cfg, &priv, err, sizeof(err)) < 0 || priv.drop)
		return 21;
	if (daemon_privileges_drop(&priv, err, sizeof(err)) < 0)
		return 22;
	rewind(log);
	if (fgets(line, sizeof(line), log) == NULL)
		return warns ? 23 : 0;
	snprintf(want, sizeof(want), "porterd: level=warning event=privileges_kept user=%s "
		 "uid=%lu reason=not_started_as_root\n", cfg->user, (unsigned long)geteuid());
	return warns && strcmp(line, want) == 0 ? 0 : 24;
}

START_TEST(test_privileges_not_root)
{
	FILE *log = tmpfile();
	pid_t pid;

	if (geteuid() == 0 && !have_nobody()) {
		fprintf(stderr, "test_daemon: test_privileges_not_root skipped: no nobody\n");
		return;
	}
	ck_assert_ptr_nonnull(log);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(not_root_in_child(not_root_rows[_i].text, log, not_root_rows[_i].warns));
	ck_assert_int_eq(wait_child(pid), 0);
	fclose(log);
}
END_TEST

/* Not root, a chroot cannot be entered: an error, never a silent skip
 * (the maildir is already the path inside it). */
static int not_root_chroot_in_child(void)
{
	struct daemon_privileges priv;
	struct config *cfg = parse(BASE "chroot /tmp\nmaildir /tmp/%u\n");
	char err[512];

	if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
		return 30;
	if (daemon_privileges_prepare(cfg, &priv, err, sizeof(err)) < 0)
		return 31;
	if (daemon_privileges_drop(&priv, err, sizeof(err)) == 0)
		return 32;
	return strcmp(err, "chroot /tmp: Operation not permitted") == 0 ? 0 : 33;
}

START_TEST(test_privileges_not_root_chroot)
{
	pid_t pid;

	if (geteuid() == 0 && !have_nobody())
		return;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(not_root_chroot_in_child());
	ck_assert_int_eq(wait_child(pid), 0);
}
END_TEST

/* ---- background --------------------------------------------------------- */

/*
 * The daemon's side, in the grandchild: record what it sees in report
 * (a path: it is in "/" now), then tell the waiting process, or exit
 * without telling it.
 */
static void daemon_side(struct daemon_ready *ready, const char *report, bool tell)
{
	char cwd[64] = "";
	struct stat in, null;
	FILE *f;

	f = fopen(report, "w");
	if (f == NULL)
		_exit(40);
	(void)!getcwd(cwd, sizeof(cwd));
	fstat(STDIN_FILENO, &in);
	stat("/dev/null", &null);
	fprintf(f, "cwd=%s leader=%d stdin_null=%d pid=%ld\n", cwd,
		getsid(0) == getpid(), in.st_rdev == null.st_rdev, (long)getpid());
	fclose(f);
	if (tell)
		daemon_ready(ready);
	_exit(0);
}

/* Runs porterd's -d start in a child; the child's status is what the
 * waiting process exited with. The test is the subreaper, so the
 * daemon is reaped here rather than left to init. */
static int background_run(const char *report, bool tell)
{
	struct daemon_ready ready;
	char err[512];
	pid_t pid, daemon;
	int rc;

	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (daemon_background(&ready, err, sizeof(err)) < 0)
			_exit(41);
		daemon_side(&ready, report, tell);
	}
	rc = wait_child(pid);
	daemon = waitpid(-1, NULL, 0);	/* the daemon, reparented here */
	ck_assert_int_gt(daemon, 0);
	return rc;
}

START_TEST(test_background_ready)
{
	struct tmpdir t;
	char report[160], buf[256];

	tmpdir_make(&t);
	snprintf(report, sizeof(report), "%s/report", t.path);
	ck_assert_int_eq(background_run(report, true), 0);
	read_file(report, buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "cwd=/ leader=0 stdin_null=1 pid=", 32) == 0, "%s", buf);
	tmpdir_remove(&t);
}
END_TEST

/* A daemon that exits before it is ready makes the start fail. */
START_TEST(test_background_not_ready)
{
	struct tmpdir t;
	char report[160];

	tmpdir_make(&t);
	snprintf(report, sizeof(report), "%s/report", t.path);
	ck_assert_int_eq(background_run(report, false), 1);
	ck_assert(exists(report));
	tmpdir_remove(&t);
}
END_TEST

/* In the foreground nobody waits: daemon_ready() does nothing. */
START_TEST(test_foreground_ready)
{
	struct daemon_ready ready = DAEMON_READY_FOREGROUND;
	struct stat before, after;

	ck_assert_int_eq(fstat(STDERR_FILENO, &before), 0);
	daemon_ready(&ready);
	ck_assert_int_eq(fstat(STDERR_FILENO, &after), 0);
	ck_assert(before.st_ino == after.st_ino && before.st_dev == after.st_dev);
}
END_TEST

/* ---- socket activation ---- */

static void set_listen_env(const char *pid, const char *fds)
{
	ck_assert_int_eq(setenv("LISTEN_PID", pid, 1), 0);
	ck_assert_int_eq(setenv("LISTEN_FDS", fds, 1), 0);
}

static int listen_fds_now(void)
{
	char err[256] = "";

	return daemon_listen_fds(err, sizeof(err));
}

START_TEST(test_listen_fds_none)
{
	char err[256];

	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	ck_assert_int_eq(daemon_listen_fds(err, sizeof(err)), 0);
}
END_TEST

/* Meant for another process: ignored, and not passed on either. */
START_TEST(test_listen_fds_other_pid)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	set_listen_env(pid, "1");
	ck_assert_int_eq(listen_fds_now(), 0);
	ck_assert_ptr_null(getenv("LISTEN_PID"));
	ck_assert_ptr_null(getenv("LISTEN_FDS"));
}
END_TEST

START_TEST(test_listen_fds_malformed)
{
	static const char *const bad[] = { "0", "-1", "x", "1x", "", "17" };
	char pid[32];

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		set_listen_env(pid, bad[i]);
		ck_assert_msg(listen_fds_now() == -1, "LISTEN_FDS=%s", bad[i]);
	}
}
END_TEST

/* Descriptor 3 must be a listening stream socket: a pipe is refused,
 * a listening TCP socket is taken and made non-blocking. Run in a child:
 * descriptor 3 may be Check's own. Exit status: the step that failed. */
static int listen_fds_child(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char pid[32], err[256];
	int p[2], sock;

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	if (pipe(p) != 0 || dup2(p[0], DAEMON_LISTEN_FDS_START) < 0)
		return 10;
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	if (daemon_listen_fds(err, sizeof(err)) != -1)
		return 11;
	sock = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sock < 0 || bind(sock, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(sock, 4) != 0 || dup2(sock, DAEMON_LISTEN_FDS_START) < 0)
		return 12;
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	if (daemon_listen_fds(err, sizeof(err)) != 1)
		return 13;
	if (!(fcntl(DAEMON_LISTEN_FDS_START, F_GETFL) & O_NONBLOCK) ||
	    !(fcntl(DAEMON_LISTEN_FDS_START, F_GETFD) & FD_CLOEXEC))
		return 14;
	return 0;
}

START_TEST(test_listen_fds_checked)
{
	int status = 0;
	pid_t child = fork();

	ck_assert_int_ge(child, 0);
	if (child == 0)
		_exit(listen_fds_child());
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

static Suite *daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("pidfile");

	tcase_add_test(tc, test_pidfile_create_and_remove);
	tcase_add_test(tc, test_pidfile_held_by_live_process);
	tcase_add_test(tc, test_pidfile_held_without_pid);
	tcase_add_loop_test(tc, test_pidfile_stale_taken_over, 0,
			    (int)(sizeof(stale_rows) / sizeof(stale_rows[0])));
	tcase_add_test(tc, test_pidfile_removes_only_its_own);
	tcase_add_test(tc, test_pidfile_relative_path_after_chdir);
	tcase_add_test(tc, test_pidfile_refuses_links);
	tcase_add_loop_test(tc, test_pidfile_errors, 0,
			    (int)(sizeof(pidfile_err_rows) / sizeof(pidfile_err_rows[0])));
	tcase_add_loop_test(tc, test_pidfile_read, 0,
			    (int)(sizeof(read_rows) / sizeof(read_rows[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("privileges");
	tcase_add_loop_test(tc, test_privileges_prepare_as_root, 0,
			    (int)(sizeof(resolve_rows) / sizeof(resolve_rows[0])));
	tcase_add_test(tc, test_privileges_drop_with_chroot);
	tcase_add_test(tc, test_privileges_bad_chroot);
	tcase_add_loop_test(tc, test_privileges_not_root, 0,
			    (int)(sizeof(not_root_rows) / sizeof(not_root_rows[0])));
	tcase_add_test(tc, test_privileges_not_root_chroot);
	suite_add_tcase(s, tc);

	tc = tcase_create("activation");
	tcase_add_test(tc, test_listen_fds_none);
	tcase_add_test(tc, test_listen_fds_other_pid);
	tcase_add_test(tc, test_listen_fds_malformed);
	tcase_add_test(tc, test_listen_fds_checked);
	suite_add_tcase(s, tc);

	tc = tcase_create("background");
	tcase_add_test(tc, test_background_ready);
	tcase_add_test(tc, test_background_not_ready);
	tcase_add_test(tc, test_foreground_ready);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(daemon_suite());
}
