/*
 * job_json.h - one JSON encoding per frame, shared by the sinks that ask
 * for it (aero_host.envelope_json). The first sink to encode a job's frame
 * keeps a copy on the job; the others copy it instead of encoding again.
 */
#ifndef AERO_JOB_JSON_H
#define AERO_JOB_JSON_H

#include "sink_pipeline.h"

#include <stddef.h>

/*
 * The batch this thread is about to hand to write_batch (frames[i] is
 * &jobs[i]->view). `share`: some other sink will want these jobs too, so
 * an encoding is worth keeping. Until job_json_batch_end, envelope_json
 * calls on this thread for those frames use the jobs' shared encoding.
 */
void job_json_batch_begin(struct frame_job *const *jobs, size_t n, bool share);
void job_json_batch_end(void);

/* aero_host.envelope_json: snprintf contract, as envelope_json_encode. */
size_t job_json_encode(const aero_frame *frame, char *buf, size_t cap);

/* The job's owner, before freeing it. */
void job_json_free(struct frame_job *job);

#endif
