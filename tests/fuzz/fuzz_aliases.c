/*
 * fuzz_aliases — the `aliases` backend: an aliases(5) file and up to
 * three :include: files. The input is split at each line "%%" (the bytes
 * "\n%%\n"): the first part is the aliases file, the next ones a.inc,
 * b.inc and c.inc beside it, so ":include:a.inc" in the input reaches
 * them. They are written to a directory of their own (on a tmpfs when
 * there is one) and opened as `directory aliases PATH` opens them. An
 * input whose :include: path starts with '/' or ".." is not run: it would
 * read files of the system.
 *
 * A failed load must leave no backend and a terminated message naming
 * one of the files, "PATH:" or "PATH:LINE:", and a token it shows as bad
 * is never a program or a file target. A load that succeeds is read again
 * here, the plain way (a model, written separately from the parser), and
 * every alias must answer as it says: its key as shown (lowercase, quoted
 * when it must be), a list with the same members in the same order (name
 * and address targets, mailbox tokens for \name and for the alias itself,
 * :include: files spliced in), a forward for one address written alone,
 * a user when every target is the alias itself. Program (|command) and
 * file (/path) targets are in no answer: the model never makes a member
 * of them, and every answer is compared with it. Mailbox tokens answer
 * users; names that are only targets are not found; count is the number
 * of aliases. Words of the input, asked as names (quoted ones with their
 * quoted-pairs) and as mailbox tokens, get answers that keep backend.h's
 * contract: one call, fields that fit the status, bounded strings.
 *
 * Then the backend is chained as the directory chains it, before or after
 * a table (test_aliases.c's): aliases asked and expanded through
 * directory_lookup/directory_expand must answer their kind, and every
 * address of an expansion must come from the aliases file or the table
 * (a program's text never reaches a client), with no control octet (a
 * mailbox token's mark never leaves the directory).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/backend.h"
#include "porterd/command.h"
#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/log.h"

#include "fuzz_util.h"

#define PARTS_MAX 4		/* the aliases file and three includes */
#define ALIAS_NAME_MAX 64	/* aliases.c's bound on a name as shown */
/* What the model holds; a larger input's answers are not compared. */
#define ALIASES_MAX 2048
#define MEMBERS_MAX 16384
#define MAILBOXES_MAX 4096
#define ARENA_MAX (1 << 20)
#define MARK '\001'		/* before a mailbox token's name */
#define CHAIN_ALIASES_MAX 16		/* aliases asked through the directory */
#define NOTFOUND_ASKS_MAX 64

static const char separator[] = "\n%%\n";
static const char *const part_names[PARTS_MAX] = { "aliases", "a.inc", "b.inc", "c.inc" };

static const char chain_table[] =
	"alice    user     Alice Example\n"
	"jones    user     Fred Jones\n"
	"carol    moved    carol@newco.example\n"
	"bob      forward  bob@elsewhere.example\n"
	"staff    list     alice, jones, remote@elsewhere.example\n";
/* What an expansion may reach in that table, besides local users. */
static const char *const table_addresses[] = {
	"bob@elsewhere.example", "remote@elsewhere.example",
};
static const char *const table_users[] = { "alice", "jones" };
static const char *const table_keys[] = { "alice", "jones", "carol", "bob", "staff" };
static const char *const table_names[] = { "Alice Example", "Fred Jones" };

static char *tmp_dir, *table_dir;
static char part_path[PARTS_MAX][4200];
static char table_path[4200];
static struct config *cfg;

static void cleanup(void)
{
	if (tmp_dir != NULL)
		fuzz_rmtree(tmp_dir, 1);
	if (table_dir != NULL)
		fuzz_rmtree(table_dir, 1);
	free(tmp_dir);
	free(table_dir);
	tmp_dir = table_dir = NULL;
	config_unref(&cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char conf[] = "hostname mail.example.test\n"
				   "domains example.test example.org\n"
				   "directory table /nonexistent\n";
	static FILE *devnull;
	char err[512];

	(void)argc;
	(void)argv;
	/* Expansions log what they skip: formatted, then thrown away. */
	devnull = fopen(getenv("FUZZ_LOG") != NULL ? "/dev/stderr" : "/dev/null", "w");
	log_init(LOG_LEVEL_DEBUG, devnull != NULL ? devnull : stderr);
	tmp_dir = fuzz_mkdtemp("aliases");
	table_dir = fuzz_mkdtemp("aliases-table");	/* out of :include:'s reach */
	for (size_t i = 0; i < PARTS_MAX; i++)
		snprintf(part_path[i], sizeof(part_path[i]), "%s/%s", tmp_dir,
			 part_names[i]);
	snprintf(table_path, sizeof(table_path), "%s/chain.table", table_dir);
	fuzz_write_file(table_path, chain_table, sizeof(chain_table) - 1);
	fuzz_set_cleanup(cleanup);
	if (config_parse(conf, sizeof(conf) - 1, "fuzz.conf", &cfg, err, sizeof(err)) < 0)
		fuzz_fail("aliases: fixture config: %s", err);
	return 0;
}

/* ---- the input: files ---- */

struct part {
	const char *s;
	size_t len;
	bool present;
};

/* The first separator in [s, end), or NULL. */
static const char *find_separator(const char *s, const char *end)
{
	size_t n = sizeof(separator) - 1;

	for (; (size_t)(end - s) >= n; s++)
		if (memcmp(s, separator, n) == 0)
			return s;
	return NULL;
}

static void split_parts(const uint8_t *data, size_t size, struct part parts[PARTS_MAX])
{
	const char *s = (const char *)data, *end = s + size;

	memset(parts, 0, PARTS_MAX * sizeof(*parts));
	for (size_t i = 0; i < PARTS_MAX; i++) {
		const char *sep = i + 1 < PARTS_MAX ? find_separator(s, end) : NULL;

		parts[i] = (struct part){ s, sep != NULL ? (size_t)(sep - s)
							 : (size_t)(end - s), true };
		if (sep == NULL)
			break;
		s = sep + sizeof(separator) - 1;
	}
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool has_prefix_nocase(const char *s, const char *e, const char *prefix)
{
	size_t n = strlen(prefix);

	if ((size_t)(e - s) < n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != prefix[i])
			return false;
	return true;
}

/* An :include: path that could leave the directory: '/' or ".." first. */
static bool reaches_outside(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *e = s + size;

	for (; s < e; s++) {
		const char *p;

		if (!has_prefix_nocase(s, e, ":include:"))
			continue;
		for (p = s + 9; p < e && (*p == ' ' || *p == '\t'); p++)
			;
		if (p < e && (*p == '/' || (e - p >= 2 && p[0] == '.' && p[1] == '.')))
			return true;
	}
	return false;
}

/* ---- the plain reading ---- */

enum { K_LIST, K_FORWARD, K_SELF };

/*
 * Strings of the model by kind, for the questions asked of every answer
 * (is this a member, a name, a mailbox of the file?) at a hash probe
 * each, however large the file. A slot is in use when its generation is
 * the current one, so emptying the set is one increment.
 */
enum set_kind { SET_MEMBER, SET_NAME, SET_MAILBOX };

#define SET_SLOTS (1 << 16)	/* > 2 * (MEMBERS_MAX + 2 * ALIASES_MAX + MAILBOXES_MAX) */

struct set_slot {
	const char *s;
	uint32_t gen;
	uint8_t kind;
};

static struct set_slot set_slots[SET_SLOTS];
static uint32_t set_gen;

static size_t set_home(enum set_kind kind, const char *s)
{
	uint64_t h = 14695981039346656037ULL ^ (uint64_t)kind;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29)) & (SET_SLOTS - 1);
}

static struct set_slot *set_find(enum set_kind kind, const char *s)
{
	for (size_t i = set_home(kind, s);; i = (i + 1) & (SET_SLOTS - 1)) {
		struct set_slot *sl = &set_slots[i];

		if (sl->gen != set_gen || (sl->kind == kind && strcmp(sl->s, s) == 0))
			return sl;
	}
}

static bool set_has(enum set_kind kind, const char *s)
{
	return set_find(kind, s)->gen == set_gen;
}

/* False when s was there already. */
static bool set_add(enum set_kind kind, const char *s)
{
	struct set_slot *sl = set_find(kind, s);

	if (sl->gen == set_gen)
		return false;
	*sl = (struct set_slot){ s, set_gen, (uint8_t)kind };
	return true;
}

struct m_alias {
	char key[ALIAS_NAME_MAX + 3];	/* as shown */
	char content[ALIAS_NAME_MAX + 1];	/* as matched */
	int kind;
	size_t first, n;		/* members[first .. first + n) */
	unsigned written;		/* targets in the aliases file itself */
	bool written_address, has_self;
};

struct model {
	struct m_alias a[ALIASES_MAX];
	size_t naliases;
	const char *members[MEMBERS_MAX];
	size_t nmembers;
	const char *mailboxes[MAILBOXES_MAX];	/* declared, as shown */
	size_t nmailboxes;
	char arena[ARENA_MAX];
	size_t used;
	bool too_big;
	const struct part *parts;
	bool in_program;
	unsigned depth;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_sep(char c)
{
	return is_blank(c) || c == ',';
}

static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c >= 0x80 ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool is_dot_string(const char *s, size_t len)
{
	if (len == 0 || len > ALIAS_NAME_MAX || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.' ? s[i + 1] == '.' : !is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* A copy of [s, s + len) in the arena, lowercase, with prefix/suffix. */
static const char *arena_put(struct model *m, const char *pre, const char *s,
			     size_t len, const char *post)
{
	size_t a = strlen(pre), b = strlen(post);
	char *d;

	if (m->used + a + len + b + 1 > sizeof(m->arena)) {
		m->too_big = true;
		return "";
	}
	d = m->arena + m->used;
	memcpy(d, pre, a);
	for (size_t i = 0; i < len; i++)
		d[a + i] = lower(s[i]);
	memcpy(d + a + len, post, b);
	d[a + len + b] = '\0';
	m->used += a + len + b + 1;
	return d;
}

static struct m_alias *open_alias(struct model *m)
{
	return &m->a[m->naliases - 1];
}

static void member_add(struct model *m, const char *s)
{
	if (m->nmembers == MEMBERS_MAX) {
		m->too_big = true;
		return;
	}
	m->members[m->nmembers++] = s;
	open_alias(m)->n++;
	set_add(SET_MEMBER, s);
}

static void written(struct model *m, bool address)
{
	if (m->depth > 0)
		return;
	open_alias(m)->written++;
	open_alias(m)->written_address = address;
}

static void mailbox_declare(struct model *m, const char *shown)
{
	if (m->nmailboxes == MAILBOXES_MAX) {
		m->too_big = true;
		return;
	}
	if (set_add(SET_MAILBOX, shown))
		m->mailboxes[m->nmailboxes++] = shown;
}

/* The alias itself, once: its mailbox. */
static void self(struct model *m)
{
	struct m_alias *a = open_alias(m);
	const char *tok;

	if (a->has_self)
		return;
	a->has_self = true;
	tok = arena_put(m, "\001", a->key, strlen(a->key), "");
	member_add(m, tok);
	mailbox_declare(m, tok + 1);
}

static bool same_name_nocase(const char *a, const char *s, size_t len)
{
	if (strlen(a) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (lower(a[i]) != lower(s[i]))
			return false;
	return true;
}

/* A name (or with mailbox, \name) target: content s of len octets. */
static void name_or_mailbox(struct model *m, const char *s, size_t len, bool mailbox)
{
	bool plain = is_dot_string(s, len);
	const char *tok;

	written(m, false);
	if (same_name_nocase(open_alias(m)->content, s, len)) {
		self(m);
		return;
	}
	tok = arena_put(m, mailbox ? (plain ? "\001" : "\001\"") : (plain ? "" : "\""),
			s, len, plain ? "" : "\"");
	member_add(m, tok);
	if (mailbox)
		mailbox_declare(m, tok + 1);
}

static void address(struct model *m, const char *s, size_t len)
{
	written(m, true);
	member_add(m, arena_put(m, "", s, len, ""));
}

static void model_lines(struct model *m, const struct part *f, bool main_file);

/* :include:PATH, PATH trimmed: one of the parts ("./" before it is the
 * same file). */
static void include(struct model *m, const char *s, const char *e)
{
	written(m, false);
	while (s < e && is_blank(*s))
		s++;
	while (e > s && is_blank(e[-1]))
		e--;
	while (e - s >= 2 && s[0] == '.' && s[1] == '/')
		for (s += 2; s < e && *s == '/'; s++)
			;
	for (size_t i = 1; i < PARTS_MAX; i++) {
		if ((size_t)(e - s) == strlen(part_names[i]) &&
		    memcmp(s, part_names[i], (size_t)(e - s)) == 0) {
			if (!m->parts[i].present)
				fuzz_fail("aliases: loaded an :include: of %s, not written",
					  part_names[i]);
			if (m->depth >= PARTS_MAX)
				fuzz_fail("aliases: loaded an :include: loop");
			m->depth++;
			model_lines(m, &m->parts[i], false);
			m->depth--;
			return;
		}
	}
	fuzz_fail("aliases: loaded :include:'%.*s', no such file here",
		  (int)(e - s), s);
}

/* A quoted target's content [s, e): what it starts with says what it is. */
static void quoted_content(struct model *m, const char *s, const char *e)
{
	if (s == e)
		fuzz_fail("aliases: loaded an empty quoted target");
	if (*s == '|' || *s == '/') {
		written(m, false);
		self(m);
	} else if (has_prefix_nocase(s, e, ":include:")) {
		include(m, s + 9, e);
	} else if (*s == '\\') {
		name_or_mailbox(m, s + 1, (size_t)(e - s - 1), true);
	} else {
		name_or_mailbox(m, s, (size_t)(e - s), false);
	}
}

/* One target at s; where the targets go on. */
static const char *target(struct model *m, const char *s, const char *e)
{
	const char *t;

	if (*s == '"') {
		const char *q = memchr(s + 1, '"', (size_t)(e - s - 1));

		if (q == NULL)
			fuzz_fail("aliases: loaded an unbalanced quote");
		t = q + 1;
		if (t < e && *t == '@') {
			while (t < e && !is_sep(*t))
				t++;
			address(m, s, (size_t)(t - s));
			return t;
		}
		quoted_content(m, s + 1, q);
		return t;
	}
	if (*s == '|' || *s == '/') {
		written(m, false);
		self(m);
		m->in_program = true;
		return s;
	}
	if (has_prefix_nocase(s, e, ":include:")) {
		for (t = s; t < e && *t != ','; t++)
			;
		include(m, s + 9, t);
		return t;
	}
	for (t = s; t < e && !is_sep(*t); t++)
		;
	if (t - s >= 2 && *s == '<' && t[-1] == '>') {
		s++;
		t--;
		if (s < t && *s == '\\')
			name_or_mailbox(m, s + 1, (size_t)(t - s - 1), true);
		else if (memchr(s, '@', (size_t)(t - s)) != NULL)
			address(m, s, (size_t)(t - s));
		else
			name_or_mailbox(m, s, (size_t)(t - s), false);
		return t + 1;
	}
	if (*s == '\\')
		name_or_mailbox(m, s + 1, (size_t)(t - s - 1), true);
	else if (memchr(s, '@', (size_t)(t - s)) != NULL)
		address(m, s, (size_t)(t - s));
	else
		name_or_mailbox(m, s, (size_t)(t - s), false);
	return t;
}

/* Targets in [s, e); a program's text is passed over, up to a comma
 * outside double quotes. */
static void targets(struct model *m, const char *s, const char *e)
{
	while (s < e && !m->too_big) {
		if (m->in_program) {
			while (s < e && *s != ',') {
				if (*s == '"') {
					s = memchr(s + 1, '"', (size_t)(e - s - 1));
					if (s == NULL)
						fuzz_fail("aliases: loaded a program's open quote");
				}
				s++;
			}
			if (s < e) {
				m->in_program = false;
				s++;
			}
			continue;
		}
		if (is_sep(*s))
			s++;
		else
			s = target(m, s, e);
	}
}

static void alias_finish(struct model *m)
{
	struct m_alias *a;

	m->in_program = false;
	if (m->naliases == 0)
		return;
	a = open_alias(m);
	if (a->written == 0)
		fuzz_fail("aliases: loaded alias '%s' without targets", a->key);
	if (a->has_self && a->n == 1)
		a->kind = K_SELF;
	else if (a->written == 1 && a->written_address)
		a->kind = K_FORWARD;
	else
		a->kind = K_LIST;
}

/* "name: targets" at s (not blank). */
static void alias_start(struct model *m, const char *s, const char *e)
{
	const char *c, *t;
	struct m_alias *a;
	bool quoted = *s == '"';

	alias_finish(m);
	if (m->naliases == ALIASES_MAX) {
		m->too_big = true;
		return;
	}
	if (quoted) {
		c = memchr(s + 1, '"', (size_t)(e - s - 1));
		if (c == NULL)
			fuzz_fail("aliases: loaded a name's open quote");
		t = c + 1;
		s++;
	} else {
		for (c = s; c < e && *c != ':' && !is_blank(*c); c++)
			;
		t = c;
	}
	/* [s, c) is the name; t is past it */
	while (t < e && is_blank(*t))
		t++;
	if (t == e || *t != ':' || c - s == 0 || c - s > ALIAS_NAME_MAX)
		fuzz_fail("aliases: loaded a line without 'name:'");
	a = &m->a[m->naliases++];
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < (size_t)(c - s); i++)
		a->content[i] = lower(s[i]);
	if (!quoted || is_dot_string(s, (size_t)(c - s)))
		snprintf(a->key, sizeof(a->key), "%s", a->content);
	else
		snprintf(a->key, sizeof(a->key), "\"%s\"", a->content);
	a->first = m->nmembers;
	set_add(SET_NAME, a->key);
	set_add(SET_NAME, a->content);
	targets(m, t + 1, e);
}

static void model_lines(struct model *m, const struct part *f, bool main_file)
{
	const char *s = f->s, *end = f->s + f->len;

	while (s < end && !m->too_big) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl != NULL ? nl : end, *first = s;

		if (e > s && e[-1] == '\r')
			e--;
		while (first < e && is_blank(*first))
			first++;
		if (first < e && *first != '#') {
			if (main_file && first == s) {
				alias_start(m, s, e);
			} else {
				if (main_file && m->naliases == 0)
					fuzz_fail("aliases: loaded a continuation first");
				targets(m, first, e);
				if (!main_file)
					m->in_program = false;
			}
		}
		s = nl != NULL ? nl + 1 : end;
	}
}

static void model_read(struct model *m, const struct part parts[PARTS_MAX])
{
	m->naliases = m->nmembers = m->nmailboxes = m->used = 0;
	m->too_big = m->in_program = false;
	m->depth = 0;
	m->parts = parts;
	set_gen++;
	model_lines(m, &parts[0], true);
	if (!m->too_big)
		alias_finish(m);
}

/* ---- answers of the backend ---- */

struct answer {
	int calls;
	struct dir_result res;
};

static void check_string(const char *s, size_t max, bool mark_ok, const char *what)
{
	size_t n;

	if (s == NULL)
		fuzz_fail("aliases: %s is NULL", what);
	n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		fuzz_fail("aliases: %s of %zu octets", what, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t' && !(i == 0 && c == MARK && mark_ok)) ||
		    c == 0x7f)
			fuzz_fail("aliases: control octet 0x%02x in %s", c, what);
	}
}

static void on_answer(const struct dir_result *r, void *arg)
{
	struct answer *a = arg;

	if (++a->calls != 1)
		fuzz_fail("aliases: answered %d times", a->calls);
	a->res = *r;
	if (r->status != DIR_USER && r->status != DIR_LIST &&
	    r->status != DIR_FORWARD && r->status != DIR_NOTFOUND)
		fuzz_fail("aliases: status %d", (int)r->status);
	if (r->fullname != NULL)
		fuzz_fail("aliases: a full name");
	if (r->status != DIR_LIST && (r->members != NULL || r->nmembers != 0))
		fuzz_fail("aliases: members with status %d", (int)r->status);
	if (r->status != DIR_FORWARD && r->target != NULL)
		fuzz_fail("aliases: target with status %d", (int)r->status);
	if (r->status == DIR_NOTFOUND) {
		if (r->key != NULL)
			fuzz_fail("aliases: key when not found");
		return;
	}
	check_string(r->key, ALIAS_NAME_MAX, false, "key");
	if (r->status == DIR_LIST) {
		if (r->nmembers > 0 && r->members == NULL)
			fuzz_fail("aliases: %zu members, NULL", r->nmembers);
		for (size_t i = 0; i < r->nmembers; i++)
			check_string(r->members[i], ADDRESS_PATH_MAX + 2, true, "member");
	}
	if (r->status == DIR_FORWARD) {
		check_string(r->target, ADDRESS_PATH_MAX, false, "target");
		if (strchr(r->target, '@') == NULL)
			fuzz_fail("aliases: target '%s' without '@'", r->target);
	}
}

static struct answer ask(struct backend *be, const char *local)
{
	struct dir_query q = { .local = local, .by_name = true,
			       .domains = (const char *const *)cfg->domains,
			       .ndomains = cfg->ndomains };
	struct answer a;

	memset(&a, 0, sizeof(a));
	backend_aliases_ops.lookup(be, &q, on_answer, &a);
	if (a.calls != 1)
		fuzz_fail("aliases: lookup answered %d times, synchronously", a.calls);
	return a;
}

static void check_alias(struct backend *be, const struct model *m,
			const struct m_alias *al)
{
	static const enum dir_status status[] = { DIR_LIST, DIR_FORWARD, DIR_USER };
	struct answer a = ask(be, al->key);

	if (a.res.status != status[al->kind] || strcmp(a.res.key, al->key) != 0)
		fuzz_fail("aliases: '%s' answers %d '%s', the file %d", al->key,
			  (int)a.res.status, a.res.key != NULL ? a.res.key : "",
			  (int)status[al->kind]);
	if (al->kind == K_FORWARD &&
	    strcmp(a.res.target, m->members[al->first]) != 0)
		fuzz_fail("aliases: '%s' forwards to '%s', the file '%s'", al->key,
			  a.res.target, m->members[al->first]);
	if (al->kind == K_LIST) {
		if (a.res.nmembers != al->n)
			fuzz_fail("aliases: '%s' has %zu members, the file %zu", al->key,
				  a.res.nmembers, al->n);
		for (size_t i = 0; i < al->n; i++)
			if (strcmp(a.res.members[i], m->members[al->first + i]) != 0)
				fuzz_fail("aliases: '%s' member %zu is '%s', the file '%s'",
					  al->key, i, a.res.members[i],
					  m->members[al->first + i]);
	}
	/* Asked by its content (a quoted name's, unquoted): the same alias. */
	if (strcmp(al->key, al->content) != 0) {
		a = ask(be, al->content);
		if (a.res.status != status[al->kind] || strcmp(a.res.key, al->key) != 0)
			fuzz_fail("aliases: '%s' asked as '%s' answers %d", al->key,
				  al->content, (int)a.res.status);
	}
}

static bool is_alias(const char *name)
{
	return set_has(SET_NAME, name);
}

static bool is_mailbox(const char *shown)
{
	return set_has(SET_MAILBOX, shown);
}

/* Mailbox tokens answer users, declared ones only; names that are only
 * targets are not found. */
static void check_tokens(struct backend *be, const struct model *m)
{
	char tok[ALIAS_NAME_MAX + 4];
	size_t asked = 0;

	for (size_t i = 0; i < m->nmailboxes; i++) {
		struct answer a;

		snprintf(tok, sizeof(tok), "\001%s", m->mailboxes[i]);
		a = ask(be, tok);
		if (a.res.status != DIR_USER || strcmp(a.res.key, m->mailboxes[i]) != 0)
			fuzz_fail("aliases: mailbox '%s' answers %d", m->mailboxes[i],
				  (int)a.res.status);
	}
	for (size_t i = 0; i < m->naliases; i++) {
		snprintf(tok, sizeof(tok), "\001%s", m->a[i].key);
		if (!is_mailbox(m->a[i].key) && ask(be, tok).res.status != DIR_NOTFOUND)
			fuzz_fail("aliases: no mailbox '%s', yet it answers", m->a[i].key);
	}
	for (size_t i = 0; i < m->nmembers && asked < NOTFOUND_ASKS_MAX; i++) {
		const char *s = m->members[i];

		asked++;
		if (s[0] == MARK || strchr(s, '@') != NULL || is_alias(s))
			continue;
		if (ask(be, s).res.status != DIR_NOTFOUND)
			fuzz_fail("aliases: target '%s' answers, not an alias", s);
	}
}

/* Words of the input, as the client could send them (quoted ones with
 * their quoted-pairs too), and as mailbox tokens: every answer keeps
 * the contract. */
static void ask_words(struct backend *be, const struct part *f)
{
	const char *p = f->s, *e = f->s + f->len;
	char w[ADDRESS_PATH_MAX + 2];
	size_t n = 0;

	while (n < 16 && p < e) {
		size_t k = 0;

		while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',' ||
				 *p == ':' || *p == '\0'))
			p++;
		for (; p < e && k < ADDRESS_PATH_MAX && *p != ' ' && *p != '\t' &&
		     *p != '\n' && *p != ',' && *p != ':' && *p != '\0'; p++)
			w[1 + k++] = lower(*p);
		w[1 + k] = '\0';
		if (k == 0)
			continue;
		n++;
		ask(be, w + 1);
		w[0] = MARK;
		ask(be, w);
	}
}

/* ---- through the directory ---- */

struct dir_seen {
	int calls;
	enum dir_status status;
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* An address an expansion may show: from the aliases file or the table. */
static bool address_known(const char *addr)
{
	const char *at = strrchr(addr, '@');
	char local[ADDRESS_PATH_MAX + 1];

	if (in_list(addr, table_addresses, NELEMS(table_addresses)))
		return true;
	if (set_has(SET_MEMBER, addr))
		return true;
	if (at == NULL || (strcmp(at, "@example.test") != 0 &&
			   strcmp(at, "@example.org") != 0) ||
	    (size_t)(at - addr) >= sizeof(local))
		return false;
	snprintf(local, sizeof(local), "%.*s", (int)(at - addr), addr);
	return in_list(local, table_users, NELEMS(table_users)) ||
	       is_mailbox(local) || is_alias(local);
}

static void check_address(const char *addr, const char *what)
{
	if (addr == NULL)
		fuzz_fail("aliases: %s without an address", what);
	check_string(addr, ADDRESS_PATH_MAX * 2, false, what);
	if (!address_known(addr))
		fuzz_fail("aliases: %s '%s' is from neither the file nor the table",
			  what, addr);
}

static void on_lookup(const struct dir_answer *a, void *arg)
{
	struct dir_seen *s = arg;

	s->calls++;
	s->status = a->status;
	if (a->status == DIR_USER || a->status == DIR_LIST || a->status == DIR_FORWARD)
		check_address(a->address, "lookup address");
	if (a->fullname != NULL && !in_list(a->fullname, table_names, NELEMS(table_names)))
		fuzz_fail("aliases: full name '%s' not the table's", a->fullname);
}

static void on_expand(const struct dir_expansion *e, void *arg)
{
	struct dir_seen *s = arg;

	s->calls++;
	s->status = e->status;
	for (size_t i = 0; i < e->nmembers; i++) {
		check_address(e->members[i].address, "expansion member");
		if (e->members[i].fullname != NULL &&
		    !in_list(e->members[i].fullname, table_names, NELEMS(table_names)))
			fuzz_fail("aliases: member full name '%s' not the table's",
				  e->members[i].fullname);
	}
}

/* The status a lookup of alias al answers through the directory. */
static enum dir_status chain_status(const struct model *m, const struct m_alias *al)
{
	const char *t, *at;

	if (al->kind == K_SELF)
		return DIR_USER;
	if (al->kind == K_LIST)
		return DIR_LIST;
	t = m->members[al->first];
	at = strrchr(t, '@');
	/* a forward to one of our domains is a list of one */
	return at != NULL && (strcmp(at, "@example.test") == 0 ||
			      strcmp(at, "@example.org") == 0) ? DIR_LIST : DIR_FORWARD;
}

/* Alias al asked (and expanded) as the session would ask for key, or
 * for key@domain when domain is given: the argument is built here, as
 * command_parse_lookup_arg splits a plain one. */
static void chain_ask(struct directory *dir, const struct model *m,
		      const struct m_alias *al, const char *domain, bool table_first)
{
	char text[ALIAS_NAME_MAX * 2 + 32];
	struct lookup_arg q = { .local = al->key, .locallen = strlen(al->key),
				.smtputf8 = true };
	struct dir_seen s = { 0, DIR_TEMPFAIL };

	q.textlen = (size_t)snprintf(text, sizeof(text), "%s%s%s", al->key,
				     domain != NULL ? "@" : "", domain != NULL ? domain : "");
	q.text = text;
	if (domain != NULL) {
		q.domain = domain;
		q.domainlen = strlen(domain);
	}
	for (const char *c = text; *c != '\0'; c++)
		q.has_8bit |= (unsigned char)*c >= 0x80;
	if (directory_lookup(dir, &q, on_lookup, &s) != NULL || s.calls != 1)
		fuzz_fail("aliases: directory lookup of '%s' not answered once", text);
	if ((!table_first || !in_list(al->content, table_keys, NELEMS(table_keys))) &&
	    s.status != chain_status(m, al))
		fuzz_fail("aliases: '%s' through the directory answers %d, want %d",
			  text, (int)s.status, (int)chain_status(m, al));
	s.calls = 0;
	if (directory_expand(dir, &q, on_expand, &s) != NULL || s.calls != 1)
		fuzz_fail("aliases: directory expansion of '%s' not answered once", text);
	if (s.status == DIR_TEMPFAIL || s.status == DIR_NOTFOUND)
		fuzz_fail("aliases: expansion of '%s' answers %d", text, (int)s.status);
}

/* The aliases before or after the table, as directory_open chains them. */
static void check_chain(struct backend *be, const struct model *m, bool table_first)
{
	struct backend *table = NULL;
	struct directory *dir;
	char err[512];

	if (backend_table_ops.open(table_path, NULL, &table, err, sizeof(err)) < 0)
		fuzz_fail("aliases: fixture table: %s", err);
	dir = directory_new(cfg);
	if (table_first)
		directory_append(dir, &backend_table_ops, table);
	directory_append(dir, &backend_aliases_ops, be);
	if (!table_first)
		directory_append(dir, &backend_table_ops, table);
	for (size_t i = 0; i < m->naliases && i < CHAIN_ALIASES_MAX; i++) {
		chain_ask(dir, m, &m->a[i], NULL, table_first);
		chain_ask(dir, m, &m->a[i], "example.org", table_first);
	}
	directory_free(&dir);	/* closes both backends */
}

/* ---- a failed load ---- */

/*
 * What a target error says after "PATH:LINE: ": "alias 'NAME': " and the
 * rest, or NULL when the name shown could hold a "'" (then where it ends
 * is not certain) or the error is about no alias.
 */
static const char *error_after_alias(const char *msg)
{
	const char *name, *q;

	while (*msg >= '0' && *msg <= '9')
		msg++;
	if (strncmp(msg, ": alias '", 9) != 0)
		return NULL;
	name = msg + 9;
	q = strchr(name, '\'');
	if (q == NULL || strncmp(q, "': ", 3) != 0 ||
	    (*name == '"' && (q - name < 2 || q[-1] != '"')))
		return NULL;
	return q + 3;
}

/* "PATH:" or "PATH:LINE:" of one of the files; a target it shows as bad
 * is never a program's or a file target's text. */
static void check_error(const char *err, size_t errsize)
{
	static const char *const bad[] = { "bad address '", "bad target '",
					   "misplaced '\"' in '" };
	const char *rest = NULL;

	if (memchr(err, '\0', errsize) == NULL)
		fuzz_fail("aliases: error message not terminated");
	for (size_t i = 0; i < PARTS_MAX && rest == NULL; i++) {
		size_t n = strlen(part_path[i]);

		if (strncmp(err, part_path[i], n) == 0 && err[n] == ':')
			rest = err + n;
	}
	if (rest == NULL)
		fuzz_fail("aliases: error '%s' names none of the files", err);
	rest = error_after_alias(rest + 1);
	for (size_t i = 0; rest != NULL && i < NELEMS(bad); i++) {
		size_t n = strlen(bad[i]);

		if (strncmp(rest, bad[i], n) == 0 && (rest[n] == '|' || rest[n] == '/'))
			fuzz_fail("aliases: error '%s' shows a program or file", err);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model m;
	struct part parts[PARTS_MAX];
	struct backend *be = (struct backend *)1;
	char err[1024];

	if (reaches_outside(data, size))
		return -1;	/* not run, not kept */
	split_parts(data, size, parts);
	for (size_t i = 0; i < PARTS_MAX; i++) {
		if (parts[i].present)
			fuzz_write_file(part_path[i], parts[i].s, parts[i].len);
		else
			unlink(part_path[i]);
	}
	memset(err, 0x55, sizeof(err));
	if (backend_aliases_ops.open(part_path[0], NULL, &be, err, sizeof(err)) < 0) {
		if (be != NULL)
			fuzz_fail("aliases: failed open left a backend");
		check_error(err, sizeof(err));
		return 0;
	}
	if (be == NULL)
		fuzz_fail("aliases: open succeeded without a backend");
	model_read(&m, parts);
	if (!m.too_big) {
		if (backend_aliases_ops.count(be) != m.naliases)
			fuzz_fail("aliases: count %zu, the file %zu aliases",
				  backend_aliases_ops.count(be), m.naliases);
		for (size_t i = 0; i < m.naliases; i++)
			check_alias(be, &m, &m.a[i]);
		check_tokens(be, &m);
		ask_words(be, &parts[0]);
		check_chain(be, &m, size % 2 == 1);	/* closes be */
		return 0;
	}
	backend_aliases_ops.close(&be);
	if (be != NULL)
		fuzz_fail("aliases: close did not clear the pointer");
	return 0;
}
