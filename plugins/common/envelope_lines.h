/*
 * envelope_lines.h - a growable buffer of JSON lines: each frame's envelope
 * (host->envelope_json) followed by '\n', for sinks that write a batch with
 * one write(2). Compiled into each plugin that uses it (plugins link no core
 * symbol); one buffer per instance, reused across batches, used from one
 * thread at a time.
 */
#ifndef AERO_PLUGIN_ENVELOPE_LINES_H
#define AERO_PLUGIN_ENVELOPE_LINES_H

#include <aeroarc/plugin.h>
#include <stddef.h>

struct envelope_lines {
    char *buf; /* lines of the batch being written; NULL until init */
    size_t cap;
};

/* Allocates `cap` bytes: 0 or -ENOMEM (then buf stays NULL, cap 0, and
 * envelope_lines_free is still safe). */
int envelope_lines_init(struct envelope_lines *l, size_t cap);

/* Appends frame f as a line at buf[*used] and advances *used past the '\n',
 * growing the buffer if needed: 0 or -ENOMEM (then *used is unchanged and
 * so are the lines before it). */
int envelope_lines_append(struct envelope_lines *l, const aero_host *h,
                          const aero_frame *f, size_t *used);

void envelope_lines_free(struct envelope_lines *l);

#endif
