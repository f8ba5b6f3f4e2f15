/*
 * job_json.c - a frame bound for two JSON sinks (a file and the console,
 * say) used to be encoded twice: about 2% of the relay's CPU under load.
 *
 * A plugin passes only the frame pointer back, and may pass a copy of a
 * frame of its own: the job is recognised only as the frame of the batch
 * it is writing (the next one, or the last one again for a retry with a
 * larger buffer), never by pointer arithmetic on what it passed.
 */
#include "job_json.h"

#include "envelope_json.h"

#include <stdlib.h>
#include <string.h>

struct job_json {
    size_t len;
    char text[]; /* len bytes and a NUL */
};

void job_json_batch_begin(struct job_json_batch *b, struct frame_job *const *jobs, size_t n,
                          bool share)
{
    *b = (struct job_json_batch){.jobs = jobs, .n = n, .share = share, .writer = pthread_self()};
}

void job_json_batch_end(struct job_json_batch *b) { b->jobs = NULL; }

/* The job whose view `frame` is, if it is the batch's next or last one. */
static struct frame_job *batch_job(struct job_json_batch *b, const aero_frame *frame)
{
    if (!b || !b->jobs || !pthread_equal(b->writer, pthread_self()))
        return NULL;
    size_t i = b->next;
    if (i < b->n && frame == &b->jobs[i]->view) {
        b->next = i + 1;
        return b->jobs[i];
    }
    if (i > 0 && frame == &b->jobs[i - 1]->view)
        return b->jobs[i - 1];
    return NULL;
}

size_t job_json_encode(struct job_json_batch *b, const aero_frame *frame, char *buf, size_t cap)
{
    struct frame_job *job = batch_job(b, frame);
    if (!job)
        return envelope_json_encode(frame, buf, cap);

    struct job_json *kept = atomic_load_explicit(&job->json, memory_order_acquire);
    if (kept) {
        if (kept->len < cap)
            memcpy(buf, kept->text, kept->len + 1);
        return kept->len;
    }
    size_t n = envelope_json_encode(frame, buf, cap);
    if (n >= cap || !b->share)
        return n;
    /* Keep a copy for the other sinks. Out of memory: they encode again. */
    struct job_json *copy = malloc(sizeof(*copy) + n + 1);
    if (!copy)
        return n;
    copy->len = n;
    memcpy(copy->text, buf, n + 1);
    struct job_json *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&job->json, &none, copy, memory_order_acq_rel,
                                                 memory_order_acquire))
        free(copy); /* another sink's thread kept one first */
    return n;
}

void job_json_free(struct frame_job *job) { free(atomic_load(&job->json)); }
