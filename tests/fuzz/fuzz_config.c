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
	if (path[0] == '/' && cfg->maildir[0] != '/')
		fuzz_fail("config: maildir '%s' not made absolute", cfg->maildir);
	if (cfg->max_message_size < 1024 || cfg->max_message_size > (uint64_t)1 << 40)
		fuzz_fail("config: max_message_size %llu",
			  (unsigned long long)cfg->max_message_size);
	if (cfg->max_recipients < 1 || cfg->max_recipients > 100000)
		fuzz_fail("config: max_recipients %llu",
			  (unsigned long long)cfg->max_recipients);
	if (cfg->dir != NULL)
		fuzz_fail("config: config_parse opened a directory");
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
