/*
 * fuzz_config — config_parse() on arbitrary text, then config_unref().
 *
 * The input is the file's text, as is (so conf/porterd.conf is a seed).
 * The path it is said to come from rotates between a relative, an
 * absolute and the root directory, chosen by the input's length, so
 * relative maildir paths are resolved against each kind of base. No
 * directory is opened: config_parse() must not read any file.
 *
 * On error: -1, no config, and a NUL-terminated message naming the path.
 * On success: every field the rest of porterd relies on is set and within
 * the bounds config.h and porterd.conf(5) give.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "porterd/config.h"
#include "porterd/log.h"
#include "porterd/policy.h"
#include "porterd/ratelimit.h"

#include "fuzz_util.h"

static const char *const paths[] = {
	"porterd.conf",
	"/etc/porterd/porterd.conf",
	"/porterd.conf",
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init(LOG_LEVEL_ERR, stderr);
	return 0;
}

static bool lower_domain(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

/* The limits porterd.conf(5) gives, and what server.c builds from them. */
static void check_limits(const struct config *cfg)
{
	struct ratelimit *rl;

	if (!IN(cfg->max_clients, 1, 1000000) || !IN(cfg->max_clients_per_ip, 1, 1000000) ||
	    !IN(cfg->command_timeout, 1, 3600) || !IN(cfg->data_timeout, 1, 3600) ||
	    cfg->shutdown_timeout > 3600 ||
	    !IN(cfg->error_soft_limit, 1, 1000) || !IN(cfg->error_hard_limit, 1, 1000) ||
	    !IN(cfg->error_delay, 0, 60) || !IN(cfg->vrfy_rate.count, 1, 1000000) ||
	    !IN(cfg->vrfy_rate.period, 1, 86400) ||
	    !IN(cfg->rate_table_size, 16, RATELIMIT_ENTRIES_MAX) ||
	    !IN(cfg->rate_ipv6_prefix, 16, RATELIMIT_V6_PREFIX_MAX))
		fuzz_fail("config: a limit out of its bounds");
	for (size_t i = 0; i < cfg->ntrusted; i++) {
		char text[NET_TEXT_MAX];

		if (cfg->trusted == NULL || !net_format(&cfg->trusted[i], text, sizeof(text)))
			fuzz_fail("config: trusted network %zu cannot be formatted", i);
	}
	for (size_t i = 0; i < cfg->npublic; i++) {
		const char *a = cfg->public_addrs[i];

		if (a == NULL || a[0] == '\0')
			fuzz_fail("config: public address %zu empty", i);
		for (; *a != '\0'; a++)
			if (*a >= 'A' && *a <= 'Z')
				fuzz_fail("config: public address %zu not lowercase", i);
	}
	/* server.c: any rate the file may give starts a limiter (the table
	 * size only scales the memory, so a small one is asked here). */
	rl = ratelimit_new((unsigned)cfg->vrfy_rate.count, (unsigned)cfg->vrfy_rate.period,
			   16, (unsigned)cfg->rate_ipv6_prefix);
	if (rl == NULL)
		fuzz_fail("config: vrfy_rate %llu/%llus accepted, but ratelimit_new refuses it",
			  (unsigned long long)cfg->vrfy_rate.count,
			  (unsigned long long)cfg->vrfy_rate.period);
	ratelimit_free(&rl);
}

/* The daemon's settings: absolute paths, and a chroot with maildir
 * inside it (maildir is then the path inside, which does not start
 * with the chroot's own path unless by chance of names). */
static void check_daemon(const struct config *cfg)
{
	if (cfg->user == NULL || cfg->user[0] == '\0' || strlen(cfg->user) > 32 ||
	    (cfg->group != NULL && (cfg->group[0] == '\0' || strlen(cfg->group) > 32)))
		fuzz_fail("config: user or group empty or too long");
	if ((cfg->pidfile != NULL && cfg->pidfile[0] != '/') ||
	    (cfg->chroot_dir != NULL && cfg->chroot_dir[0] != '/'))
		fuzz_fail("config: pidfile or chroot not absolute");
	if (cfg->chroot_dir != NULL && strcmp(cfg->chroot_dir, "/") != 0 &&
	    cfg->chroot_dir[strlen(cfg->chroot_dir) - 1] == '/')
		fuzz_fail("config: chroot '%s' ends in /", cfg->chroot_dir);
	if ((unsigned)cfg->log > CONFIG_LOG_SYSLOG || config_log_name(cfg->log) == NULL)
		fuzz_fail("config: log %d", (int)cfg->log);
}

static void check_config(const struct config *cfg, const char *path)
{
	if (cfg->refs != 1)
		fuzz_fail("config: refs %u", cfg->refs);
	if (cfg->path == NULL || strcmp(cfg->path, path) != 0 || cfg->base_dir == NULL)
		fuzz_fail("config: path or base_dir not kept");
	if (cfg->hostname == NULL || cfg->hostname[0] == '\0' ||
	    strlen(cfg->hostname) > 255)
		fuzz_fail("config: bad hostname");
	if (cfg->banner == NULL)
		fuzz_fail("config: no banner");
	for (const char *s = cfg->banner; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e)
			fuzz_fail("config: banner octet 0x%02x", (unsigned char)*s);
	if (cfg->ndomains == 0 || cfg->ndomains > CONFIG_DOMAINS_MAX || cfg->domains == NULL)
		fuzz_fail("config: %zu domains", cfg->ndomains);
	for (size_t i = 0; i < cfg->ndomains; i++)
		if (cfg->domains[i] == NULL || !lower_domain(cfg->domains[i]))
			fuzz_fail("config: domain %zu is not a lowercase domain", i);
	if (cfg->nlisten == 0 || cfg->nlisten > CONFIG_LISTEN_MAX || cfg->listen == NULL)
		fuzz_fail("config: %zu listen addresses", cfg->nlisten);
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i] == NULL || strchr(cfg->listen[i], ':') == NULL)
			fuzz_fail("config: listen %zu has no port", i);
	if (cfg->ndirectories == 0 || cfg->ndirectories > CONFIG_DIRECTORIES_MAX ||
	    cfg->directories == NULL)
		fuzz_fail("config: %zu directories", cfg->ndirectories);
	for (size_t i = 0; i < cfg->ndirectories; i++) {
		const struct config_directory *d = &cfg->directories[i];

		if (d->type == NULL || d->type[0] == '\0' || d->args == NULL || d->line == 0)
			fuzz_fail("config: directory %zu incomplete", i);
	}
	if ((unsigned)cfg->vrfy > VRFY_OFF || (unsigned)cfg->expn > EXPN_OFF)
		fuzz_fail("config: vrfy %d expn %d", (int)cfg->vrfy, (int)cfg->expn);
	if (cfg->maildir == NULL || cfg->maildir[0] == '\0' || strstr(cfg->maildir, "%u") == NULL)
		fuzz_fail("config: maildir template without %%u");
	/* -d changes to "/", so every path must be absolute, whatever the
	 * config file's path was */
	if (cfg->maildir[0] != '/')
		fuzz_fail("config: maildir '%s' not made absolute", cfg->maildir);
	if (cfg->max_message_size < 1024 || cfg->max_message_size > (uint64_t)1 << 40)
		fuzz_fail("config: max_message_size %llu",
			  (unsigned long long)cfg->max_message_size);
	if (cfg->max_recipients < 1 || cfg->max_recipients > 100000)
		fuzz_fail("config: max_recipients %llu",
			  (unsigned long long)cfg->max_recipients);
	if (cfg->dir != NULL)
		fuzz_fail("config: config_parse opened a directory");
	check_limits(cfg);
	check_daemon(cfg);
	if (config_vrfy_name(cfg->vrfy) == NULL || config_expn_name(cfg->expn) == NULL)
		fuzz_fail("config: no name for a mode");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = paths[size % (sizeof(paths) / sizeof(paths[0]))];
	struct config *cfg = (struct config *)1, *ref;
	char err[512];
	int rc;

	memset(err, 0x55, sizeof(err));
	rc = config_parse((const char *)data, size, path, &cfg, err, sizeof(err));
	if (rc < 0) {
		if (rc != -1 || cfg != NULL)
			fuzz_fail("config_parse: rc %d, cfg %p on error", rc, (void *)cfg);
		if (memchr(err, '\0', sizeof(err)) == NULL)
			fuzz_fail("config_parse: error message not terminated");
		if (strncmp(err, path, strlen(path)) != 0)
			fuzz_fail("config_parse: error '%s' does not name %s", err, path);
		return 0;
	}
	if (rc != 0 || cfg == NULL)
		fuzz_fail("config_parse: rc %d, cfg %p", rc, (void *)cfg);
	check_config(cfg, path);
	ref = config_ref(cfg);
	config_unref(&ref);
	if (ref != NULL)
		fuzz_fail("config_unref: pointer not cleared");
	config_unref(&cfg);
	return 0;
}
