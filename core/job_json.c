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

static _Thread_local struct {
    struct frame_job *const *jobs;
    size_t n, next;
    bool share;
} tl_batch;

void job_json_batch_begin(struct frame_job *const *jobs, size_t n, bool share)
{
    tl_batch.jobs = jobs;
    tl_batch.n = n;
    tl_batch.next = 0;
    tl_batch.share = share;
}

void job_json_batch_end(void) { tl_batch.jobs = NULL; }

/* The job whose view `frame` is, if it is the batch's next or last one. */
static struct frame_job *batch_job(const aero_frame *frame)
{
    size_t i = tl_batch.next;
    if (!tl_batch.jobs)
        return NULL;
    if (i < tl_batch.n && frame == &tl_batch.jobs[i]->view) {
        tl_batch.next = i + 1;
        return tl_batch.jobs[i];
    }
    if (i > 0 && frame == &tl_batch.jobs[i - 1]->view)
        return tl_batch.jobs[i - 1];
    return NULL;
}

size_t job_json_encode(const aero_frame *frame, char *buf, size_t cap)
{
    struct frame_job *job = batch_job(frame);
    if (!job)
        return envelope_json_encode(frame, buf, cap);

    struct job_json *kept = atomic_load_explicit(&job->json, memory_order_acquire);
    if (kept) {
        if (kept->len < cap)
            memcpy(buf, kept->text, kept->len + 1);
        return kept->len;
    }
    size_t n = envelope_json_encode(frame, buf, cap);
    if (n >= cap || !tl_batch.share)
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
