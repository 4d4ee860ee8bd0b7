/*
 * daemon — what makes porterd a system daemon: the pidfile, the move to
 * the background (-d), the chroot and the switch from root to the
 * configured user. Plain POSIX, no libevent: main calls these around
 * server_new(), in this order:
 *
 *   daemon_background()          -d only; the invoking process waits
 *   daemon_pidfile_open()        before binding, so a second porterd
 *                                stops at the pidfile, not at the port
 *   daemon_privileges_prepare()  names resolved before any chroot
 *   server_new()                 listeners bound, workers started
 *   daemon_privileges_drop()     before the event loop: no protocol code
 *                                ever runs as root
 *   daemon_ready()               -d: the invoking process exits 0
 */
#ifndef PORTERD_DAEMON_H
#define PORTERD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;

/* ---- pidfile ---------------------------------------------------------- */

struct daemon_pidfile;

/*
 * Create or take over the pidfile at path and write this process's pid
 * into it. It stays locked (flock) as long as it is open: a file left by
 * a process that is gone is taken over; one locked by a running process
 * is an error, "PATH: held by running porterd (pid N)". Other errors
 * name the path too. The descriptors are close-on-exec.
 */
int daemon_pidfile_open(const char *path, struct daemon_pidfile **pf_r,
			char *err, size_t errsize);

/* The pid a pidfile names, or -1 when it names none (no file, no whole
 * line). For messages and tests: the lock, not this, decides. */
pid_t daemon_pidfile_read(const char *path);

/*
 * Remove the pidfile if it is still the file this process locked (also
 * after a chroot: it is removed through a descriptor of its directory),
 * then release it. A file that cannot be removed (after the privilege
 * drop its directory may be root's) is logged and left: being unlocked,
 * it is taken over at the next start. NULL is fine.
 */
void daemon_pidfile_close(struct daemon_pidfile **pf);

/* ---- socket activation ------------------------------------------------ */

/* systemd passes listening sockets from this descriptor on. */
#define DAEMON_LISTEN_FDS_START 3

/*
 * systemd socket activation (sd_listen_fds(3)): how many listening
 * sockets were passed to this process (LISTEN_PID is ours), from
 * DAEMON_LISTEN_FDS_START on, each checked to be a listening stream
 * socket and made non-blocking and close-on-exec; 0 when none were
 * passed. The LISTEN_* variables are removed either way, so no child
 * inherits them. -1 and a message in err when they are malformed.
 */
int daemon_listen_fds(char *err, size_t errsize);

/* ---- privileges ------------------------------------------------------- */

/* Longest user or group name kept. */
#define DAEMON_NAME_MAX 64

struct daemon_privileges {
	bool drop;		/* started as root: switch to uid and gid */
	uid_t uid;
	gid_t gid;
	char user[DAEMON_NAME_MAX];
	char group[DAEMON_NAME_MAX];
	const char *chroot_dir;	/* cfg's, or NULL */
};

/*
 * Decide what daemon_privileges_drop() will do for cfg. Started as root
 * (euid 0): resolve cfg->user and cfg->group (default: the user's
 * primary group) now, before any chroot hides /etc/passwd; a user or
 * group that does not exist, or the user root, is an error. Started as
 * anyone else nothing will be dropped; when cfg names a user explicitly
 * that is not the current one, a warning is logged.
 */
int daemon_privileges_prepare(const struct config *cfg,
			      struct daemon_privileges *priv_r,
			      char *err, size_t errsize);

/*
 * chroot(DIR) and chdir("/") when configured, then, when dropping,
 * setgroups(1, gid), setgid(gid), setuid(uid), and verify: real and
 * effective ids are the target and setuid(0) fails. Every thread of the
 * process changes with it. Any failure is an error: porterd must not
 * serve half-dropped.
 */
int daemon_privileges_drop(const struct daemon_privileges *priv,
			   char *err, size_t errsize);

/* ---- background ------------------------------------------------------- */

/* How the daemon tells the process that started it that it is serving. */
struct daemon_ready {
	int fd;			/* to the waiting process; -1: nobody waits */
	int null_fd;		/* /dev/null, opened before any chroot */
};

#define DAEMON_READY_FOREGROUND { .fd = -1, .null_fd = -1 }

/*
 * Tell systemd (Type=notify) about the daemon's state: "READY=1" once it
 * serves, "RELOADING=1" while a SIGHUP's load runs, "STOPPING=1", with a
 * STATUS= line for `systemctl status`. Nothing happens when NOTIFY_SOCKET
 * is not set, or when porterd was built without libsystemd.
 */
void daemon_notify(const char *state);
void daemon_notify_reloading(void);

/*
 * Detach (-d): fork, setsid, fork again, chdir("/"), stdin and stdout to
 * /dev/null. Returns 0 in the daemon, whose stderr is still the caller's
 * so start errors are seen. The invoking process never returns: it waits
 * until the daemon calls daemon_ready() (exit 0) or exits first (exit 1).
 * -1 with err when it fails: before the fork in the invoking process,
 * after it in the daemon; either way the caller exits 1.
 */
int daemon_background(struct daemon_ready *ready, char *err, size_t errsize);

/* The daemon is serving: stderr to /dev/null, and the waiting process
 * exits 0. Nothing in the foreground. */
void daemon_ready(struct daemon_ready *ready);

#endif
