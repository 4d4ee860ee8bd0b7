/*
 * config — reads porterd.conf into a reference-counted struct config.
 *
 * Every directive is bound through config_keys[] (name, type, default,
 * bounds, field), and each type is parsed, defaulted and freed by one
 * handler in config_types[], so parsing, defaults and documentation cannot
 * drift apart. Defaults are applied through the same handlers as the
 * file's own lines, so they are validated the same way.
 *
 * It must never interpret a directory's type or arguments (directory_open()
 * does that, with the line number kept here), never read any file other
 * than the one config_load() is given, and never leave a half-built config
 * behind: on any error everything is freed and -1 returned.
 */
#include "porterd/config.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/util.h>

#include "porterd/command.h"
#include "porterd/directory.h"
#include "porterd/policy.h"
#include "porterd/strutil.h"

/* RFC 1035 2.3.4: a label is at most 63 octets. */
#define CONFIG_LABEL_MAX 63

/* How much of a bad value an error message quotes. */
#define CONFIG_QUOTE_MAX 80

/* Longest "a, b or c" list of enum values in a message. */
#define CONFIG_CHOICES_MAX 128

/* Enum fields are written through an int; make sure they are one. */
_Static_assert(sizeof(enum vrfy_mode) == sizeof(int), "vrfy_mode is not int-sized");
_Static_assert(sizeof(enum expn_mode) == sizeof(int), "expn_mode is not int-sized");
_Static_assert(sizeof(enum config_log) == sizeof(int), "config_log is not int-sized");

/* Longest user or group name (useradd's limit is 32). */
#define CONFIG_ACCOUNT_MAX 32

enum config_type {
	CONFIG_WORD,		/* one word: char * */
	CONFIG_TEXT,		/* the rest of the line: char * */
	CONFIG_WORDS,		/* one or more words: char **, size_t count */
	CONFIG_LIST,		/* one word a line, repeatable: char **, count */
	CONFIG_DIRECTORY,	/* TYPE ARGS..., repeatable: config_directory *, count */
	CONFIG_ENUM,		/* one word of a fixed set: an enum */
	CONFIG_NUMBER,		/* a count or size, suffix k/m/g: uint64_t */
	CONFIG_TIME,		/* seconds, suffix s/m/h: uint64_t */
	CONFIG_RATE,		/* N/PERIOD, PERIOD a time: struct config_rate */
	CONFIG_PATH,		/* one word, relative to the file's directory: char * */
	CONFIG_NETS,		/* one or more ADDR[/PREFIX], or none: net *, count */
};

struct config_enum_value {
	const char *name;
	int value;
};

struct parse;
struct config_key;

/* Validate one value; on failure write the error and return false. */
typedef bool config_check_fn(struct parse *p, const struct config_key *k,
			     const char *value);

/* Write a computed default into buf; on failure write the error, return -1. */
typedef int config_default_fn(struct parse *p, char *buf, size_t size);

struct config_key {
	const char *name;
	enum config_type type;
	/* When the key is absent: each of defaults is applied as if written
	 * on a line of its own, or default_fn computes one value, or, when
	 * required, the file is rejected. At most one of the three is set. */
	const char *const *defaults;
	config_default_fn *default_fn;
	bool required;
	size_t max;			/* most values (list types) */
	const char *unit;		/* what max counts, in messages */
	size_t field;			/* offsetof() into struct config */
	size_t count_field;		/* offsetof() of the count (list types) */
	/* offsetof() of a bool set when the key is written in the file, or
	 * 0 for none (offset 0 is refs, never such a flag). */
	size_t given_field;
	config_check_fn *check;		/* validates each value, or NULL */
	bool lower;			/* values (or the TYPE) stored lowercase */
	const struct config_enum_value *values;	/* CONFIG_ENUM, NULL-ended */
	uint64_t lo, hi;		/* CONFIG_NUMBER, CONFIG_TIME, CONFIG_RATE bounds */
};

#define DEFAULTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static config_check_fn check_listen, check_domain, check_printable,
	check_maildir, check_public, check_account;
static config_default_fn default_hostname, default_domains;

static const struct config_enum_value vrfy_values[] = {
	{ "on", VRFY_ON }, { "252", VRFY_252 }, { "off", VRFY_OFF }, { NULL, 0 },
};

static const struct config_enum_value expn_values[] = {
	{ "on", EXPN_ON }, { "off", EXPN_OFF }, { NULL, 0 },
};

/* No default: CONFIG_LOG_AUTO (0) stays until main knows about -d. */
static const struct config_enum_value log_values[] = {
	{ "stderr", CONFIG_LOG_STDERR }, { "syslog", CONFIG_LOG_SYSLOG }, { NULL, 0 },
};

/* Defaults are applied in this order: domains' default reads hostname. */
static const struct config_key config_keys[] = {
	{ .name = "listen", .type = CONFIG_LIST,
	  .defaults = DEFAULTS("0.0.0.0:25", "[::]:25"),
	  .max = CONFIG_LISTEN_MAX, .unit = "addresses",
	  .field = offsetof(struct config, listen),
	  .count_field = offsetof(struct config, nlisten),
	  .check = check_listen },
	{ .name = "hostname", .type = CONFIG_WORD,
	  .default_fn = default_hostname,
	  .field = offsetof(struct config, hostname),
	  .check = check_domain },
	{ .name = "banner", .type = CONFIG_TEXT,
	  .defaults = DEFAULTS("porterd"),
	  .field = offsetof(struct config, banner),
	  .check = check_printable },
	{ .name = "domains", .type = CONFIG_WORDS,
	  .default_fn = default_domains,
	  .max = CONFIG_DOMAINS_MAX, .unit = "domains",
	  .field = offsetof(struct config, domains),
	  .count_field = offsetof(struct config, ndomains),
	  .check = check_domain, .lower = true },
	{ .name = "directory", .type = CONFIG_DIRECTORY,
	  .required = true,
	  .max = CONFIG_DIRECTORIES_MAX, .unit = "directories",
	  .field = offsetof(struct config, directories),
	  .count_field = offsetof(struct config, ndirectories),
	  .lower = true },
	{ .name = "vrfy", .type = CONFIG_ENUM,
	  .defaults = DEFAULTS("252"),
	  .field = offsetof(struct config, vrfy),
	  .values = vrfy_values },
	{ .name = "expn", .type = CONFIG_ENUM,
	  .defaults = DEFAULTS("off"),
	  .field = offsetof(struct config, expn),
	  .values = expn_values },
	{ .name = "trusted", .type = CONFIG_NETS,
	  .defaults = DEFAULTS("127.0.0.0/8 ::1"),
	  .max = CONFIG_TRUSTED_MAX, .unit = "networks",
	  .field = offsetof(struct config, trusted),
	  .count_field = offsetof(struct config, ntrusted) },
	{ .name = "public", .type = CONFIG_WORDS,
	  .defaults = DEFAULTS("postmaster hostmaster abuse"),
	  .max = CONFIG_PUBLIC_MAX, .unit = "addresses",
	  .field = offsetof(struct config, public_addrs),
	  .count_field = offsetof(struct config, npublic),
	  .check = check_public, .lower = true },
	{ .name = "maildir", .type = CONFIG_PATH,
	  .defaults = DEFAULTS("/var/mail/%d/%u"),
	  .field = offsetof(struct config, maildir),
	  .check = check_maildir },
	{ .name = "max_message_size", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("10m"),
	  .field = offsetof(struct config, max_message_size),
	  .lo = 1024, .hi = (uint64_t)1 << 40 },
	{ .name = "max_clients", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("1000"),
	  .field = offsetof(struct config, max_clients),
	  .lo = 1, .hi = 1000000 },
	{ .name = "max_clients_per_ip", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("50"),
	  .field = offsetof(struct config, max_clients_per_ip),
	  .lo = 1, .hi = 1000000 },
	{ .name = "command_timeout", .type = CONFIG_TIME,
	  .defaults = DEFAULTS("5m"),
	  .field = offsetof(struct config, command_timeout),
	  .lo = 1, .hi = 3600 },
	{ .name = "data_timeout", .type = CONFIG_TIME,
	  .defaults = DEFAULTS("3m"),
	  .field = offsetof(struct config, data_timeout),
	  .lo = 1, .hi = 3600 },
	{ .name = "shutdown_timeout", .type = CONFIG_TIME,
	  .defaults = DEFAULTS("30s"),
	  .field = offsetof(struct config, shutdown_timeout),
	  .lo = 0, .hi = 3600 },
	{ .name = "error_soft_limit", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("5"),
	  .field = offsetof(struct config, error_soft_limit),
	  .lo = 1, .hi = 1000 },
	{ .name = "error_hard_limit", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("20"),
	  .field = offsetof(struct config, error_hard_limit),
	  .lo = 1, .hi = 1000 },
	{ .name = "error_delay", .type = CONFIG_TIME,
	  .defaults = DEFAULTS("1s"),
	  .field = offsetof(struct config, error_delay),
	  .lo = 0, .hi = 60 },
	{ .name = "vrfy_rate", .type = CONFIG_RATE,
	  .defaults = DEFAULTS("30/1m"),
	  .field = offsetof(struct config, vrfy_rate),
	  .lo = 1, .hi = 1000000 },
	{ .name = "rate_table_size", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("100k"),
	  .field = offsetof(struct config, rate_table_size),
	  .lo = 16, .hi = 16 * 1024 * 1024 },
	{ .name = "rate_ipv6_prefix", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("64"),
	  .field = offsetof(struct config, rate_ipv6_prefix),
	  .lo = 16, .hi = 128 },
	{ .name = "max_recipients", .type = CONFIG_NUMBER,
	  .defaults = DEFAULTS("100"),
	  .field = offsetof(struct config, max_recipients),
	  .lo = 1, .hi = 100000 },
	/* Keys without a default below stay NULL (or AUTO): "none". */
	{ .name = "user", .type = CONFIG_WORD,
	  .defaults = DEFAULTS("porterd"),
	  .field = offsetof(struct config, user),
	  .given_field = offsetof(struct config, user_given),
	  .check = check_account },
	{ .name = "group", .type = CONFIG_WORD,
	  .field = offsetof(struct config, group),
	  .check = check_account },
	{ .name = "chroot", .type = CONFIG_PATH,
	  .field = offsetof(struct config, chroot_dir) },
	{ .name = "pidfile", .type = CONFIG_PATH,
	  .field = offsetof(struct config, pidfile) },
	{ .name = "log", .type = CONFIG_ENUM,
	  .field = offsetof(struct config, log),
	  .values = log_values },
};

#define CONFIG_KEYS_N (sizeof(config_keys) / sizeof(config_keys[0]))

struct parse {
	struct config *cfg;
	const char *path;
	char *abs_base;			/* base_dir, made absolute */
	unsigned line;			/* 0 while applying defaults */
	unsigned first[CONFIG_KEYS_N];	/* line each key was first given on */
	char *err;
	size_t errsize;
};

/* One handler per type: apply one value (a directive's text after its
 * name, non-empty and writable), and release what the field holds. */
struct config_type_ops {
	int (*apply)(struct parse *p, const struct config_key *k, char *value);
	void (*release)(struct config *cfg, const struct config_key *k);
	bool repeatable;
};

/* A bad value, made safe and short enough to quote in a message. */
struct quoted {
	char s[CONFIG_QUOTE_MAX + sizeof("...")];
};

static void config_abort(const char *why)
{
	fprintf(stderr, "porterd: config: %s\n", why);
	abort();
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_printable(char c)
{
	return c >= 0x20 && c <= 0x7e;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static const char *quote_n(struct quoted *q, const char *s, size_t len)
{
	size_t n = len < CONFIG_QUOTE_MAX ? len : CONFIG_QUOTE_MAX;

	for (size_t i = 0; i < n; i++)
		q->s[i] = is_printable(s[i]) ? s[i] : '?';
	if (len > CONFIG_QUOTE_MAX)
		memcpy(q->s + n, "...", sizeof("..."));
	else
		q->s[n] = '\0';
	return q->s;
}

static const char *quote(struct quoted *q, const char *s)
{
	return quote_n(q, s, strlen(s));
}

/* Write "path:line: message" (or "path: message" for the whole file). */
__attribute__((format(printf, 2, 3)))
static int parse_fail(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_error_at(p->err, p->errsize, p->path, p->line, fmt, ap);
	va_end(ap);
	return -1;
}

static void *config_field(struct config *cfg, size_t offset)
{
	return (char *)cfg + offset;
}

/* Cut the next space- or tab-separated word off *cursor; NULL when none. */
static char *next_word(char **cursor)
{
	char *s = *cursor, *word;

	while (is_space(*s))
		s++;
	if (*s == '\0') {
		*cursor = s;
		return NULL;
	}
	word = s;
	while (*s != '\0' && !is_space(*s))
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*cursor = s;
	return word;
}

static size_t count_words(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (!is_space(*s) && (s[1] == '\0' || is_space(s[1])))
			n++;
	return n;
}

static char *dup_value(const char *value, bool lower)
{
	char *s = strdup(value);

	if (s != NULL && lower)
		str_lower_inplace(s);
	return s;
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static bool key_check(struct parse *p, const struct config_key *k,
		      const char *value)
{
	return k->check == NULL || k->check(p, k, value);
}

/* Single-valued types take exactly one word. */
static int one_word(struct parse *p, const struct config_key *k,
		    const char *value)
{
	struct quoted q;

	if (count_words(value) == 1)
		return 0;
	return parse_fail(p, "%s: expected one value, got '%s'", k->name,
			  quote(&q, value));
}

/* ---- checks ---------------------------------------------------------- */

static bool domain_is_valid(const char *s)
{
	size_t total = strlen(s), label = 0;

	if (total == 0 || total > ADDRESS_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i <= total; i++) {
		char c = s[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > CONFIG_LABEL_MAX || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alnum(c) || (c == '-' && label > 0)) {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

static bool check_domain(struct parse *p, const struct config_key *k,
			 const char *value)
{
	struct quoted q;

	if (domain_is_valid(value))
		return true;
	parse_fail(p, "%s: '%s' is not a valid domain name", k->name,
		   quote(&q, value));
	return false;
}

static bool check_printable(struct parse *p, const struct config_key *k,
			    const char *value)
{
	for (const char *s = value; *s != '\0'; s++) {
		if (!is_printable(*s)) {
			parse_fail(p, "%s: only printable ASCII is allowed", k->name);
			return false;
		}
	}
	return true;
}

/* A Maildir template: %u is required (one Maildir per mailbox), and %u,
 * %d and %% are the only escapes. */
static bool check_maildir(struct parse *p, const struct config_key *k,
			  const char *value)
{
	bool has_user = false;

	for (const char *s = value; *s != '\0'; s++) {
		if (*s != '%')
			continue;
		s++;
		if (*s == 'u') {
			has_user = true;
		} else if (*s != 'd' && *s != '%') {
			parse_fail(p, "%s: unknown escape '%%%c' (known: %%u, %%d, %%%%)",
				   k->name, *s != '\0' ? *s : ' ');
			return false;
		}
		if (*s == '\0')
			break;
	}
	if (!has_user)
		parse_fail(p, "%s: the template has no %%u", k->name);
	return has_user;
}

/* RFC 5321 atext: what a dot-string local part is made of, besides dots. */
static bool is_atext(char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* A dot-string (RFC 5321 4.1.2) of len octets: the only local parts a
 * public entry can name, since the address parser unquotes quoted ones
 * that are dot-strings, and others cannot be written without a blank. */
static bool local_is_valid(const char *s, size_t len)
{
	if (len == 0 || len > ADDRESS_LOCAL_MAX || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(is_atext(s[i]) || (s[i] == '.' && s[i + 1] != '.')))
			return false;
	return true;
}

/* "local" or "local@domain". */
static bool check_public(struct parse *p, const struct config_key *k,
			 const char *value)
{
	const char *at = strchr(value, '@');
	size_t local = at != NULL ? (size_t)(at - value) : strlen(value);
	struct quoted q;

	if (local_is_valid(value, local) && (at == NULL || domain_is_valid(at + 1)))
		return true;
	parse_fail(p, "%s: '%s' is not a local part or address "
		   "(LOCAL or LOCAL@DOMAIN)", k->name, quote(&q, value));
	return false;
}

/* A user or group name as useradd(8) and groupadd(8) allow them, so a
 * typo is caught here rather than by getpwnam() at start. */
static bool account_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_ACCOUNT_MAX || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!(is_alnum(c) || c == '_' || c == '.' || c == '-' ||
		      (c == '$' && i > 0 && i == n - 1)))
			return false;
	}
	return true;
}

static bool check_account(struct parse *p, const struct config_key *k,
			  const char *value)
{
	struct quoted q;

	if (account_is_valid(value))
		return true;
	parse_fail(p, "%s: '%s' is not a %s name", k->name, quote(&q, value), k->name);
	return false;
}

/* Where the port of "ADDR:PORT" or "[ADDR]:PORT" starts, or NULL when
 * there is none; *bare_v6_r tells an unbracketed IPv6 address. */
static const char *listen_port(const char *value, bool *bare_v6_r)
{
	const char *colon;

	*bare_v6_r = false;
	if (value[0] == '[') {
		const char *close = strchr(value, ']');

		return close != NULL && close[1] == ':' ? close + 2 : NULL;
	}
	colon = strchr(value, ':');
	if (colon == NULL)
		return NULL;
	if (strchr(colon + 1, ':') != NULL) {
		*bare_v6_r = true;
		return NULL;
	}
	return colon + 1;
}

/* libevent reads the port with atoi(), so "25x" would pass: check it here. */
static bool port_is_valid(const char *s)
{
	unsigned long port = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		port = port * 10 + (unsigned long)(s[i] - '0');
	}
	return port >= 1 && port <= 65535;
}

static bool check_listen(struct parse *p, const struct config_key *k,
			 const char *value)
{
	struct sockaddr_storage ss;
	int sslen = (int)sizeof(ss);
	struct quoted q, qa;
	const char *port;
	bool bare_v6;

	port = listen_port(value, &bare_v6);
	if (port == NULL || *port == '\0') {
		parse_fail(p, "%s: '%s' has no port%s", k->name, quote(&q, value),
			   bare_v6 ? " (IPv6 is written [ADDR]:PORT)" : "");
		return false;
	}
	if (!port_is_valid(port)) {
		parse_fail(p, "%s: '%s': port must be 1-65535", k->name,
			   quote(&q, value));
		return false;
	}
	if (port - 1 == value) {
		parse_fail(p, "%s: '%s' has no address", k->name, quote(&q, value));
		return false;
	}
	if (evutil_parse_sockaddr_port(value, (struct sockaddr *)&ss, &sslen) < 0) {
		parse_fail(p, "%s: '%s' is not an IP address", k->name,
			   quote_n(&qa, value, (size_t)(port - 1 - value)));
		return false;
	}
	return true;
}

/* ---- the types ------------------------------------------------------- */

static int store_string(struct parse *p, const struct config_key *k,
			const char *value)
{
	char **slot = config_field(p->cfg, k->field);

	if (*slot != NULL)
		config_abort("single-valued key set twice");
	*slot = dup_value(value, k->lower);
	return *slot != NULL ? 0 : parse_fail(p, "out of memory");
}

static int apply_word(struct parse *p, const struct config_key *k, char *value)
{
	if (one_word(p, k, value) < 0 || !key_check(p, k, value))
		return -1;
	return store_string(p, k, value);
}

static int apply_text(struct parse *p, const struct config_key *k, char *value)
{
	if (!key_check(p, k, value))
		return -1;
	return store_string(p, k, value);
}

/* Fill v (zeroed, n long) with the n words of value, checked and copied. */
static int collect_words(struct parse *p, const struct config_key *k,
			 char *value, char **v, size_t n)
{
	char *cursor = value;

	for (size_t i = 0; i < n; i++) {
		char *word = next_word(&cursor);

		if (!key_check(p, k, word))
			return -1;
		v[i] = dup_value(word, k->lower);
		if (v[i] == NULL)
			return parse_fail(p, "out of memory");
	}
	return 0;
}

static int apply_words(struct parse *p, const struct config_key *k, char *value)
{
	char ***slot = config_field(p->cfg, k->field);
	size_t *count = config_field(p->cfg, k->count_field);
	size_t n = count_words(value);
	char **v;

	if (n > k->max)
		return parse_fail(p, "%s: more than %zu %s", k->name, k->max, k->unit);
	if (*slot != NULL)
		config_abort("word list set twice");
	v = calloc(n, sizeof(*v));
	if (v == NULL)
		return parse_fail(p, "out of memory");
	if (collect_words(p, k, value, v, n) < 0) {
		free_strings(v, n);
		return -1;
	}
	*slot = v;
	*count = n;
	return 0;
}

/* array (count elements of size) with room for one more, or NULL when out
 * of memory; the caller stores it through its own typed field. */
static void *list_grow(struct parse *p, void *array, size_t count, size_t size)
{
	void *v = realloc(array, (count + 1) * size);

	if (v == NULL)
		parse_fail(p, "out of memory");
	return v;
}

static int list_full(struct parse *p, const struct config_key *k)
{
	size_t *count = config_field(p->cfg, k->count_field);

	if (*count < k->max)
		return 0;
	return parse_fail(p, "%s: more than %zu %s", k->name, k->max, k->unit);
}

static int apply_list(struct parse *p, const struct config_key *k, char *value)
{
	char ***slot = config_field(p->cfg, k->field);
	size_t *count = config_field(p->cfg, k->count_field);
	char **v, *s;

	if (one_word(p, k, value) < 0 || list_full(p, k) < 0 ||
	    !key_check(p, k, value))
		return -1;
	s = dup_value(value, k->lower);
	if (s == NULL)
		return parse_fail(p, "out of memory");
	v = list_grow(p, *slot, *count, sizeof(*v));
	if (v == NULL) {
		free(s);
		return -1;
	}
	*slot = v;
	v[(*count)++] = s;
	return 0;
}

static int apply_directory(struct parse *p, const struct config_key *k,
			   char *value)
{
	struct config_directory **slot = config_field(p->cfg, k->field);
	size_t *count = config_field(p->cfg, k->count_field);
	struct config_directory d, *v;
	char *cursor = value, *type;

	if (list_full(p, k) < 0)
		return -1;
	type = next_word(&cursor);
	while (is_space(*cursor))
		cursor++;
	d.type = dup_value(type, k->lower);
	d.args = strdup(cursor);
	d.line = p->line;
	if (d.type == NULL || d.args == NULL) {
		parse_fail(p, "out of memory");
		v = NULL;
	} else {
		v = list_grow(p, *slot, *count, sizeof(*v));
	}
	if (v == NULL) {
		free(d.type);
		free(d.args);
		return -1;
	}
	*slot = v;
	v[(*count)++] = d;
	return 0;
}

/* "on, 252 or off" */
static const char *enum_choices(const struct config_enum_value *v,
				char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; v[i].name != NULL; i++) {
		const char *sep = i == 0 ? "" : v[i + 1].name != NULL ? ", " : " or ";
		int n = snprintf(buf + used, size - used, "%s%s", sep, v[i].name);

		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* Values are matched ignoring case, like Postfix's yes/no. */
static int apply_enum(struct parse *p, const struct config_key *k, char *value)
{
	int *slot = config_field(p->cfg, k->field);
	char choices[CONFIG_CHOICES_MAX];
	struct quoted q;

	if (one_word(p, k, value) < 0)
		return -1;
	for (const struct config_enum_value *v = k->values; v->name != NULL; v++) {
		if (str_eq_nocase(value, strlen(value), v->name, strlen(v->name))) {
			*slot = v->value;
			return 0;
		}
	}
	return parse_fail(p, "%s: expected %s, got '%s'", k->name,
			  enum_choices(k->values, choices, sizeof(choices)),
			  quote(&q, value));
}

/* Digits with an optional k, m or g (powers of 1024), within k's bounds. */
static int apply_number(struct parse *p, const struct config_key *k, char *value)
{
	uint64_t *slot = config_field(p->cfg, k->field);
	uint64_t n = 0, unit = 1;
	size_t len = strlen(value), digits = len;
	struct quoted q;

	if (one_word(p, k, value) < 0)
		return -1;
	switch (len > 0 ? str_lower_char(value[len - 1]) : 0) {
	case 'k': unit = (uint64_t)1 << 10; digits--; break;
	case 'm': unit = (uint64_t)1 << 20; digits--; break;
	case 'g': unit = (uint64_t)1 << 30; digits--; break;
	default: break;
	}
	for (size_t i = 0; i < digits; i++) {
		if (value[i] < '0' || value[i] > '9' || n > (UINT64_MAX - 9) / 10)
			return parse_fail(p, "%s: '%s' is not a number", k->name,
					  quote(&q, value));
		n = n * 10 + (uint64_t)(value[i] - '0');
	}
	if (digits == 0 || n > k->hi / unit || n * unit < k->lo)
		return parse_fail(p, "%s: '%s' is not a number from %llu to %llu",
				  k->name, quote(&q, value), (unsigned long long)k->lo,
				  (unsigned long long)k->hi);
	*slot = n * unit;
	return 0;
}

bool config_parse_seconds(const char *value, uint64_t *secs_r)
{
	return str_parse_seconds(value, strlen(value), secs_r);
}

static int apply_time(struct parse *p, const struct config_key *k, char *value)
{
	uint64_t *slot = config_field(p->cfg, k->field);
	uint64_t secs;
	struct quoted q;

	if (one_word(p, k, value) < 0)
		return -1;
	if (!config_parse_seconds(value, &secs) || secs < k->lo || secs > k->hi)
		return parse_fail(p, "%s: '%s' is not a time from %llus to %llus "
				  "(a number with s, m or h)", k->name, quote(&q, value),
				  (unsigned long long)k->lo, (unsigned long long)k->hi);
	*slot = secs;
	return 0;
}

/* "N/PERIOD": N from k's bounds, PERIOD a time of 1s to 1 day. */
static int apply_rate(struct parse *p, const struct config_key *k, char *value)
{
	struct config_rate *slot = config_field(p->cfg, k->field);
	char *slash = strchr(value, '/');
	uint64_t n = 0, period;
	size_t i;
	struct quoted q;

	if (one_word(p, k, value) < 0)
		return -1;
	for (i = 0; value + i != slash && value[i] >= '0' && value[i] <= '9' && i < 9; i++)
		n = n * 10 + (uint64_t)(value[i] - '0');
	if (slash == NULL || value + i != slash || i == 0 || n < k->lo || n > k->hi ||
	    !config_parse_seconds(slash + 1, &period) || period == 0 || period > 86400)
		return parse_fail(p, "%s: '%s' is not a rate N/PERIOD (e.g. 30/1m), "
				  "N from %llu to %llu", k->name, quote(&q, value),
				  (unsigned long long)k->lo, (unsigned long long)k->hi);
	slot->count = n;
	slot->period = period;
	return 0;
}

/* One word; a relative path is taken from the config file's directory,
 * and made absolute: porterd -d changes to "/" before it serves. */
static int apply_path(struct parse *p, const struct config_key *k, char *value)
{
	char **slot = config_field(p->cfg, k->field);
	const char *base = p->abs_base;
	size_t size;

	if (one_word(p, k, value) < 0 || !key_check(p, k, value))
		return -1;
	if (value[0] == '/')
		return store_string(p, k, value);
	size = strlen(base) + 1 + strlen(value) + 1;
	*slot = malloc(size);
	if (*slot == NULL)
		return parse_fail(p, "out of memory");
	snprintf(*slot, size, "%s%s%s", base,
		 base[strlen(base) - 1] == '/' ? "" : "/", value);
	return 0;
}

/* "none" alone is an empty list: no client is trusted. */
static bool nets_none(const char *value)
{
	return str_eq_nocase(value, strlen(value), "none", strlen("none"));
}

/* Words of ADDR or ADDR/PREFIX (policy.h net_parse()), or "none". */
static int apply_nets(struct parse *p, const struct config_key *k, char *value)
{
	struct net **slot = config_field(p->cfg, k->field);
	size_t *count = config_field(p->cfg, k->count_field);
	size_t n = count_words(value);
	char *cursor = value, *word;
	struct quoted q;
	struct net *v;

	if (n > k->max)
		return parse_fail(p, "%s: more than %zu %s", k->name, k->max, k->unit);
	if (*slot != NULL)
		config_abort("network list set twice");
	if (nets_none(value))
		return 0;
	v = calloc(n, sizeof(*v));
	if (v == NULL)
		return parse_fail(p, "out of memory");
	for (size_t i = 0; i < n; i++) {
		word = next_word(&cursor);
		if (!net_parse(word, &v[i])) {
			free(v);
			return parse_fail(p, "%s: '%s' is not a network "
					  "(ADDR or ADDR/PREFIX)", k->name,
					  quote(&q, word));
		}
	}
	*slot = v;
	*count = n;
	return 0;
}

static void release_string(struct config *cfg, const struct config_key *k)
{
	char **slot = config_field(cfg, k->field);

	free(*slot);
	*slot = NULL;
}

static void release_strings(struct config *cfg, const struct config_key *k)
{
	char ***slot = config_field(cfg, k->field);
	size_t *count = config_field(cfg, k->count_field);

	free_strings(*slot, *count);
	*slot = NULL;
	*count = 0;
}

static void release_directories(struct config *cfg, const struct config_key *k)
{
	struct config_directory **slot = config_field(cfg, k->field);
	size_t *count = config_field(cfg, k->count_field);

	for (size_t i = 0; i < *count; i++) {
		free((*slot)[i].type);
		free((*slot)[i].args);
	}
	free(*slot);
	*slot = NULL;
	*count = 0;
}

static void release_nets(struct config *cfg, const struct config_key *k)
{
	struct net **slot = config_field(cfg, k->field);
	size_t *count = config_field(cfg, k->count_field);

	free(*slot);
	*slot = NULL;
	*count = 0;
}

static void release_nothing(struct config *cfg, const struct config_key *k)
{
	(void)cfg;
	(void)k;
}

static const struct config_type_ops config_types[] = {
	[CONFIG_WORD] = { apply_word, release_string, false },
	[CONFIG_TEXT] = { apply_text, release_string, false },
	[CONFIG_WORDS] = { apply_words, release_strings, false },
	[CONFIG_LIST] = { apply_list, release_strings, true },
	[CONFIG_DIRECTORY] = { apply_directory, release_directories, true },
	[CONFIG_ENUM] = { apply_enum, release_nothing, false },
	[CONFIG_NUMBER] = { apply_number, release_nothing, false },
	[CONFIG_TIME] = { apply_time, release_nothing, false },
	[CONFIG_RATE] = { apply_rate, release_nothing, false },
	[CONFIG_PATH] = { apply_path, release_string, false },
	[CONFIG_NETS] = { apply_nets, release_nets, false },
};

/* ---- defaults -------------------------------------------------------- */

static int default_hostname(struct parse *p, char *buf, size_t size)
{
	struct quoted q;

	if (gethostname(buf, size - 1) < 0)
		return parse_fail(p, "hostname: cannot get the system host name: %s",
				  strerror(errno));
	buf[size - 1] = '\0';
	if (!domain_is_valid(buf))
		return parse_fail(p, "hostname: system host name '%s' is not a "
				  "valid domain name; set hostname", quote(&q, buf));
	return 0;
}

static int default_domains(struct parse *p, char *buf, size_t size)
{
	if (p->cfg->hostname == NULL)
		config_abort("domains defaulted before hostname");
	if (!str_copy(buf, size, p->cfg->hostname, strlen(p->cfg->hostname)))
		config_abort("hostname longer than a line");
	return 0;
}

static int key_default(struct parse *p, const struct config_key *k)
{
	char buf[CONFIG_LINE_MAX + 1];

	if (k->required)
		return parse_fail(p, "no %s configured", k->name);
	if (k->default_fn != NULL) {
		if (k->default_fn(p, buf, sizeof(buf)) < 0)
			return -1;
		return config_types[k->type].apply(p, k, buf);
	}
	for (const char *const *d = k->defaults; d != NULL && *d != NULL; d++) {
		if (!str_copy(buf, sizeof(buf), *d, strlen(*d)))
			config_abort("default longer than a line");
		if (config_types[k->type].apply(p, k, buf) < 0)
			return -1;
	}
	return 0;
}

static int parse_defaults(struct parse *p)
{
	p->line = 0;
	for (size_t i = 0; i < CONFIG_KEYS_N; i++)
		if (p->first[i] == 0 && key_default(p, &config_keys[i]) < 0)
			return -1;
	return 0;
}

/* ---- rules across keys ------------------------------------------------ */

static unsigned key_line(const struct parse *p, const char *name)
{
	for (size_t i = 0; i < CONFIG_KEYS_N; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return p->first[i];
	config_abort("key_line: no such key");
	return 0;
}

/* Drop trailing "/" and "/." from an absolute directory ("/srv/x/." is
 * "/srv/x", "/." is "/"), so it compares as a prefix; returns its length. */
static size_t dir_trim(char *dir)
{
	size_t n = strlen(dir);

	for (;;) {
		if (n > 1 && dir[n - 1] == '/')
			n--;
		else if (n >= 2 && dir[n - 1] == '.' && dir[n - 2] == '/')
			n = n > 2 ? n - 2 : 1;
		else
			break;
	}
	dir[n] = '\0';
	return n;
}

/*
 * Under chroot the daemon delivers from inside DIR, so maildir must lie
 * under DIR and is kept as the path seen from inside. The check is made
 * here, not at chroot time, so that `porterd -t` catches it.
 */
static int chroot_maildir(struct parse *p)
{
	struct config *cfg = p->cfg;
	char *dir = cfg->chroot_dir;
	size_t n;
	struct quoted qm, qd;

	if (dir == NULL)
		return 0;
	n = dir_trim(dir);
	if (n == 1)
		return 0;	/* chroot / changes no path */
	if (strncmp(cfg->maildir, dir, n) != 0 || cfg->maildir[n] != '/') {
		p->line = key_line(p, "chroot");
		return parse_fail(p, "chroot: maildir '%s' is not under %s (with "
				  "chroot, maildir must be a path inside it)",
				  quote(&qm, cfg->maildir), quote(&qd, dir));
	}
	memmove(cfg->maildir, cfg->maildir + n, strlen(cfg->maildir + n) + 1);
	return 0;
}

/* ---- lines ----------------------------------------------------------- */

static const struct config_key *key_find(const char *name)
{
	for (size_t i = 0; i < CONFIG_KEYS_N; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static int key_given(struct parse *p, const struct config_key *k, char *value)
{
	size_t i = (size_t)(k - config_keys);

	if (p->first[i] != 0 && !config_types[k->type].repeatable)
		return parse_fail(p, "'%s' given twice (first on line %u)",
				  k->name, p->first[i]);
	if (*value == '\0')
		return parse_fail(p, "%s: missing value", k->name);
	if (p->first[i] == 0)
		p->first[i] = p->line;
	if (k->given_field != 0)
		*(bool *)config_field(p->cfg, k->given_field) = true;
	return config_types[k->type].apply(p, k, value);
}

/* '#' starts a comment at the start of a line or after white space. */
static void strip_comment(char *s)
{
	for (char *c = s; *c != '\0'; c++) {
		if (*c == '#' && (c == s || is_space(c[-1]))) {
			*c = '\0';
			return;
		}
	}
}

static char *trim(char *s)
{
	size_t n;

	while (is_space(*s))
		s++;
	n = strlen(s);
	while (n > 0 && is_space(s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int parse_line(struct parse *p, const char *raw, size_t len)
{
	char buf[CONFIG_LINE_MAX + 1];
	const struct config_key *k;
	struct quoted q;
	char *name, *value;

	if (len > CONFIG_LINE_MAX)
		return parse_fail(p, "line longer than %d bytes", CONFIG_LINE_MAX);
	if (memchr(raw, '\0', len) != NULL)
		return parse_fail(p, "NUL byte in line");
	memcpy(buf, raw, len);
	buf[len] = '\0';
	strip_comment(buf);
	value = trim(buf);
	name = next_word(&value);
	if (name == NULL)
		return 0;
	k = key_find(name);
	if (k == NULL)
		return parse_fail(p, "unknown directive '%s'", quote(&q, name));
	return key_given(p, k, trim(value));
}

/* The next line of text[*pos..len), without its LF or CRLF; false at end. */
static bool next_line(const char *text, size_t len, size_t *pos,
		      const char **line_r, size_t *len_r)
{
	const char *start, *nl;
	size_t n;

	if (*pos >= len)
		return false;
	start = text + *pos;
	nl = memchr(start, '\n', len - *pos);
	n = nl != NULL ? (size_t)(nl - start) : len - *pos;
	*pos += n + (nl != NULL);
	if (n > 0 && start[n - 1] == '\r')
		n--;
	*line_r = start;
	*len_r = n;
	return true;
}

static int parse_text(struct parse *p, const char *text, size_t len)
{
	const char *line;
	size_t pos = 0, n;

	while (next_line(text, len, &pos, &line, &n)) {
		if (p->line == UINT_MAX)
			return parse_fail(p, "too many lines");
		p->line++;
		if (parse_line(p, line, n) < 0)
			return -1;
	}
	return 0;
}

/* ---- the config ------------------------------------------------------ */

static void config_free(struct config *cfg)
{
	for (size_t i = 0; i < CONFIG_KEYS_N; i++)
		config_types[config_keys[i].type].release(cfg, &config_keys[i]);
	if (cfg->dir != NULL)
		directory_free(&cfg->dir);
	free(cfg->path);
	free(cfg->base_dir);
	free(cfg);
}

/* base_dir itself when absolute, else below the current directory. */
static char *absolute_dir(const char *dir)
{
	char cwd[PATH_MAX], *abs;
	size_t size;

	if (dir[0] == '/')
		return strdup(dir);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	if (strcmp(dir, ".") == 0)
		return strdup(cwd);
	size = strlen(cwd) + 1 + strlen(dir) + 1;
	abs = malloc(size);
	if (abs != NULL)
		snprintf(abs, size, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", dir);
	return abs;
}

/* base_dir is dirname(path): "." when path has no directory part. */
static char *base_dir_of(const char *path)
{
	char *copy = strdup(path), *dir;

	if (copy == NULL)
		return NULL;
	dir = strdup(dirname(copy));
	free(copy);
	return dir;
}

static struct config *config_new(struct parse *p, const char *path)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL) {
		parse_fail(p, "out of memory");
		return NULL;
	}
	cfg->refs = 1;
	cfg->path = strdup(path);
	cfg->base_dir = base_dir_of(path);
	if (cfg->path == NULL || cfg->base_dir == NULL) {
		parse_fail(p, "out of memory");
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static int parse_all(struct parse *p, const char *text, size_t len)
{
	if (parse_text(p, text, len) < 0 || parse_defaults(p) < 0)
		return -1;
	return chroot_maildir(p);
}

int config_parse(const char *text, size_t len, const char *path,
		 struct config **cfg_r, char *err, size_t errsize)
{
	struct parse p = { .path = path, .err = err, .errsize = errsize };
	int rc;

	*cfg_r = NULL;
	if (path == NULL || (text == NULL && len > 0))
		config_abort("config_parse: no path or no text");
	p.cfg = config_new(&p, path);
	if (p.cfg == NULL)
		return -1;
	p.abs_base = absolute_dir(p.cfg->base_dir);
	if (p.abs_base == NULL)
		rc = parse_fail(&p, "cannot make %s absolute: %s", p.cfg->base_dir,
				strerror(errno));
	else
		rc = parse_all(&p, text, len);
	free(p.abs_base);
	if (rc < 0) {
		config_free(p.cfg);
		return -1;
	}
	*cfg_r = p.cfg;
	return 0;
}

int config_load(const char *path, struct config **cfg_r,
		char *err, size_t errsize)
{
	struct config *cfg;
	char *text;
	size_t len;
	int rc;

	*cfg_r = NULL;
	rc = str_read_file(path, &text, &len);
	if (rc != 0) {
		/* str_read_file() says EINVAL for anything but a regular file */
		snprintf(err, errsize, "%s: cannot read: %s", path,
			 rc == EINVAL ? "not a regular file" : strerror(rc));
		return -1;
	}
	rc = config_parse(text, len, path, &cfg, err, errsize);
	free(text);
	if (rc < 0)
		return -1;
	if (directory_open(cfg, &cfg->dir, err, errsize) < 0) {
		config_unref(&cfg);
		return -1;
	}
	*cfg_r = cfg;
	return 0;
}

static bool same_text(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static bool same_listen(const struct config *a, const struct config *b)
{
	if (a->nlisten != b->nlisten)
		return false;
	for (size_t i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i], b->listen[i]) != 0)
			return false;
	return true;
}

static void name_add(char *buf, size_t size, const char *name)
{
	size_t used = strlen(buf);

	snprintf(buf + used, size - used, "%s%s", used > 0 ? " " : "", name);
}

void config_restart_only_changes(const struct config *old,
				 const struct config *new_cfg,
				 char *buf, size_t size)
{
	buf[0] = '\0';
	if (!same_listen(old, new_cfg))
		name_add(buf, size, "listen");
	if (!same_text(old->user, new_cfg->user))
		name_add(buf, size, "user");
	if (!same_text(old->group, new_cfg->group))
		name_add(buf, size, "group");
	if (!same_text(old->chroot_dir, new_cfg->chroot_dir))
		name_add(buf, size, "chroot");
	if (!same_text(old->pidfile, new_cfg->pidfile))
		name_add(buf, size, "pidfile");
	if (old->log != new_cfg->log)
		name_add(buf, size, "log");
}

struct config *config_ref(struct config *cfg)
{
	if (cfg->refs == 0 || cfg->refs == UINT_MAX)
		config_abort("config_ref: bad reference count");
	cfg->refs++;
	return cfg;
}

void config_unref(struct config **cfgp)
{
	struct config *cfg = *cfgp;

	if (cfg == NULL)
		return;
	*cfgp = NULL;
	if (cfg->refs == 0)
		config_abort("config_unref: reference count already 0");
	if (--cfg->refs == 0)
		config_free(cfg);
}

static const char *enum_name(const struct config_enum_value *v, int value)
{
	for (; v->name != NULL; v++)
		if (v->value == value)
			return v->name;
	return "?";
}

const char *config_vrfy_name(enum vrfy_mode mode)
{
	return enum_name(vrfy_values, (int)mode);
}

const char *config_expn_name(enum expn_mode mode)
{
	return enum_name(expn_values, (int)mode);
}

const char *config_log_name(enum config_log log)
{
	return log == CONFIG_LOG_AUTO ? "" : enum_name(log_values, (int)log);
}
