/*
 * porterd-makemap — compile a porterd table file into the LMDB map the
 * `lmdb` directory backend reads. main() only reads the options and
 * calls makemap_build(); a signal that ends the program removes the
 * half-built file first, so nothing of an unfinished map remains.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "porterd/makemap.h"

#ifndef PORTERD_VERSION
#define PORTERD_VERSION "0.1.0"
#endif

/* The build under way, for the signal handler. */
static struct makemap job;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: porterd-makemap [-hvV] [-o output] table\n"
		"  -o output  the map to write (default: table.lmdb)\n"
		"  -v         say what the map holds once it is in place\n"
		"  -V         print the version and exit\n");
}

static void on_fatal_signal(int sig)
{
	if (job.tmp_live)
		unlink(job.tmp_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void signals_catch(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

int main(int argc, char **argv)
{
	static char out[MAKEMAP_PATH_MAX];
	const char *output = NULL;
	char err[1024];
	bool verbose = false;
	int ch;

	while ((ch = getopt(argc, argv, "ho:vV")) != -1) {
		switch (ch) {
		case 'o':
			output = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		case 'V':
			printf("porterd-makemap %s\n", PORTERD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc - 1 || (output != NULL && output[0] == '\0')) {
		usage(stderr);
		return 1;
	}
	job.table_path = argv[optind];
	if (output == NULL) {
		if (!makemap_default_output(job.table_path, out, sizeof(out))) {
			fprintf(stderr, "porterd-makemap: %s: path too long\n",
				job.table_path);
			return 1;
		}
		output = out;
	}
	job.out_path = output;
	signals_catch();
	if (makemap_build(&job, err, sizeof(err)) < 0) {
		fprintf(stderr, "porterd-makemap: %s\n", err);
		return 1;
	}
	if (verbose)
		printf("porterd-makemap: %s: %zu entries, %zu full names, "
		       "%zu name words; %zu keys' records in their bucket\n",
		       job.out_path, job.entries, job.fullnames, job.words,
		       job.inline_records);
	return 0;
}
