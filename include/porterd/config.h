/*
 * config — porterd.conf parsed into an immutable struct config.
 *
 * Every directive is bound through one table in config.c (name, type,
 * default, bounds, field), so parsing, defaults, `porterd -t` and the
 * manual cannot drift apart. A config is reference counted: sessions keep
 * the config (and its directory) they started with.
 */
#ifndef PORTERD_CONFIG_H
#define PORTERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct directory;
struct net;		/* policy.h */

enum vrfy_mode { VRFY_ON, VRFY_252, VRFY_OFF };
enum expn_mode { EXPN_ON, EXPN_OFF };
/* Where the log goes; AUTO: stderr in the foreground, syslog with -d. */
enum config_log { CONFIG_LOG_AUTO, CONFIG_LOG_STDERR, CONFIG_LOG_SYSLOG };

/* N events per period seconds. */
struct config_rate {
	uint64_t count;
	uint64_t period;
};

/* A `directory TYPE ARGS` line, remembered with where it was written. */
struct config_directory {
	char *type;
	char *args;
	unsigned line;
};

#define CONFIG_LISTEN_MAX 16
#define CONFIG_DOMAINS_MAX 256
#define CONFIG_DIRECTORIES_MAX 16
#define CONFIG_TRUSTED_MAX 256
#define CONFIG_PUBLIC_MAX 256
#define CONFIG_LINE_MAX 4096

struct config {
	unsigned refs;
	char *path;		/* the file it was read from */
	char *base_dir;		/* its directory: relative paths resolve here */

	char *hostname;
	char *banner;
	char **domains;		/* lowercase; domains[0] qualifies bare names */
	size_t ndomains;
	char **listen;		/* "ADDR:PORT" / "[ADDR]:PORT", validated */
	size_t nlisten;
	struct config_directory *directories;
	size_t ndirectories;
	enum vrfy_mode vrfy;
	enum expn_mode expn;
	struct net *trusted;	/* get VRFY and EXPN on; may be empty */
	size_t ntrusted;
	char **public_addrs;	/* lowercase "local" or "local@domain",
				   verified truthfully under vrfy 252 */
	size_t npublic;

	/* Limits (seconds for timeouts). */
	uint64_t max_clients;		/* connections at once */
	uint64_t max_clients_per_ip;	/* connections at once from one address */
	uint64_t command_timeout;	/* deadline for each command line */
	uint64_t data_timeout;		/* idle time allowed inside DATA */
	uint64_t shutdown_timeout;	/* a stop waits this long for sessions */
	uint64_t error_soft_limit;	/* errors before replies are delayed */
	uint64_t error_hard_limit;	/* errors before 421 and close */
	uint64_t error_delay;		/* delay per error past the soft limit */
	struct config_rate vrfy_rate;	/* VRFY+EXPN+failed RCPT per client */
	uint64_t rate_table_size;	/* client addresses remembered */
	uint64_t rate_ipv6_prefix;	/* IPv6 clients bucketed by this prefix */

	char *maildir;		/* template, "%u" local part, "%d" domain;
				   made absolute against base_dir (and the
				   current directory when that is relative);
				   with chroot_dir, the path inside it */
	uint64_t max_message_size;	/* octets, as advertised by SIZE */
	uint64_t max_recipients;	/* per transaction */

	/* Running as a system daemon (daemon.c); paths are absolute. */
	char *user;		/* run as this user when started as root */
	bool user_given;	/* user was written in the file, not defaulted */
	char *group;		/* NULL: the user's primary group */
	char *chroot_dir;	/* NULL: no chroot */
	char *pidfile;		/* NULL: no pidfile */
	enum config_log log;

	struct directory *dir;	/* opened by config_load(), else NULL */
};

/*
 * Parse len bytes of text read from path (used in messages and to resolve
 * relative paths). On error returns -1 and writes "path:line: message".
 */
int config_parse(const char *text, size_t len, const char *path,
		 struct config **cfg_r, char *err, size_t errsize);

/* Read and parse path, then open the directory it names. */
int config_load(const char *path, struct config **cfg_r,
		char *err, size_t errsize);

/*
 * The directives a running porterd cannot take from a reloaded file, as
 * they were applied before it dropped root (listen, user, group, chroot,
 * pidfile, log): the names of those that differ between old and new,
 * space-separated, in buf; "" when none do.
 */
void config_restart_only_changes(const struct config *old,
				 const struct config *new_cfg,
				 char *buf, size_t size);

struct config *config_ref(struct config *cfg);
void config_unref(struct config **cfg);

const char *config_vrfy_name(enum vrfy_mode mode);
const char *config_expn_name(enum expn_mode mode);
const char *config_log_name(enum config_log log);	/* "" for AUTO */

/* A time as porterd.conf writes one: digits with an optional s, m or h,
 * in seconds. False when value is not one. Backends read their own time
 * parameters with it, so every time in the file reads alike. */
bool config_parse_seconds(const char *value, uint64_t *secs_r);

#endif
