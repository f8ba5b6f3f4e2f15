/*
 * job_json.h - one JSON encoding per frame, shared by the sinks that ask
 * for it (aero_host.envelope_json). The first sink to encode a job's frame
 * keeps a copy on the job; the others copy it instead of encoding again.
 */
#ifndef AERO_JOB_JSON_H
#define AERO_JOB_JSON_H

#include "sink_pipeline.h"

#include <pthread.h>
#include <stddef.h>

/* The batch one sink is writing; each sink owns one. Only its writer (the
 * thread that began the batch) uses it: a plugin encoding on a thread of
 * its own gets a plain encoding. */
struct job_json_batch {
    struct frame_job *const *jobs;
    size_t n, next;
    bool share;
    pthread_t writer;
};

/*
 * The batch about to go to write_batch (frames[i] is &jobs[i]->view).
 * `share`: some other sink will want these jobs too, so an encoding is
 * worth keeping. Until job_json_batch_end, job_json_encode for those
 * frames uses the jobs' shared encoding.
 */
void job_json_batch_begin(struct job_json_batch *b, struct frame_job *const *jobs, size_t n,
                          bool share);
void job_json_batch_end(struct job_json_batch *b);

/* aero_host.envelope_json of the sink whose batch `b` is (NULL: a frame
 * outside any batch): snprintf contract, as envelope_json_encode. */
size_t job_json_encode(struct job_json_batch *b, const aero_frame *frame, char *buf, size_t cap);

/* The job's owner, before freeing it. */
void job_json_free(struct frame_job *job);

#endif
