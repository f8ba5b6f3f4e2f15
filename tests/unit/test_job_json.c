/*
 * test_job_json.c - the envelope encoding a job's sinks share: the same
 * bytes as encoding afresh, kept only when another sink will want it, the
 * snprintf contract on a short buffer, frames outside the batch encoded
 * directly, and two sink threads racing on one job.
 */
#include "job_json.h"

#include "envelope_json.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define S(lit) ((aero_str){(lit), sizeof(lit) - 1})

/* The batch state of the one sink most tests play. */
static struct job_json_batch sink_batch;

static struct frame_job *job_new(uint64_t seq)
{
    struct frame_job *job = calloc(1, sizeof(*job));
    cr_assert_not_null(job);
    job->view = (aero_frame){.size = sizeof(aero_frame),
                             .agent_id = S("drone-7"),
                             .session_id = S("0123456789abcdef"),
                             .seq = seq,
                             .msg_name = S("HEARTBEAT \"quoted\""),
                             .raw_mavlink = S("\xfd\x09\x00"),
                             .received_unix_ns = 1700000000123456789LL};
    atomic_init(&job->json, NULL);
    return job;
}

static char *fresh(const aero_frame *f)
{
    size_t need = envelope_json_encode(f, NULL, 0);
    char *buf = malloc(need + 1);
    cr_assert_not_null(buf);
    envelope_json_encode(f, buf, need + 1);
    return buf;
}

static void job_free(struct frame_job *job)
{
    job_json_free(job);
    free(job);
}

Test(job_json, second_sink_gets_the_same_bytes_from_the_kept_copy)
{
    struct frame_job *jobs[2] = {job_new(1), job_new(2)};
    char a[2][1024], b[2][1024];

    job_json_batch_begin(&sink_batch, jobs, 2, true); /* the first sink's batch */
    for (int i = 0; i < 2; i++)
        job_json_encode(&sink_batch, &jobs[i]->view, a[i], sizeof(a[i]));
    job_json_batch_end(&sink_batch);
    cr_assert_not_null(atomic_load(&jobs[0]->json), "no copy kept for the other sink");

    job_json_batch_begin(&sink_batch, jobs, 2, true); /* the second sink's */
    for (int i = 0; i < 2; i++) {
        size_t n = job_json_encode(&sink_batch, &jobs[i]->view, b[i], sizeof(b[i]));
        char *want = fresh(&jobs[i]->view);
        cr_assert_eq(n, strlen(want));
        cr_assert_str_eq(a[i], want);
        cr_assert_str_eq(b[i], want);
        free(want);
    }
    job_json_batch_end(&sink_batch);
    job_free(jobs[0]);
    job_free(jobs[1]);
}

Test(job_json, nothing_is_kept_when_no_other_sink_wants_it)
{
    struct frame_job *job = job_new(5);
    char buf[1024];
    job_json_batch_begin(&sink_batch, &job, 1, false);
    job_json_encode(&sink_batch, &job->view, buf, sizeof(buf));
    job_json_batch_end(&sink_batch);
    cr_assert_null(atomic_load(&job->json));
    job_free(job);
}

Test(job_json, a_short_buffer_gets_the_length_then_the_retry_succeeds)
{
    struct frame_job *job = job_new(9);
    char *want = fresh(&job->view);
    size_t len = strlen(want);
    char small[8], big[1024];

    job_json_batch_begin(&sink_batch, &job, 1, true);
    cr_assert_eq(job_json_encode(&sink_batch, &job->view, small, sizeof(small)), len);
    cr_assert_eq(job_json_encode(&sink_batch, &job->view, big, sizeof(big)), len, "retry of the same frame");
    cr_assert_str_eq(big, want);
    job_json_batch_end(&sink_batch);

    job_json_batch_begin(&sink_batch, &job, 1, true); /* from the kept copy now */
    cr_assert_not_null(atomic_load(&job->json));
    cr_assert_eq(job_json_encode(&sink_batch, &job->view, small, sizeof(small)), len);
    cr_assert_eq(job_json_encode(&sink_batch, &job->view, big, sizeof(big)), len);
    cr_assert_str_eq(big, want);
    job_json_batch_end(&sink_batch);
    free(want);
    job_free(job);
}

Test(job_json, a_frame_outside_the_batch_is_encoded_as_it_is)
{
    struct frame_job *job = job_new(3);
    char buf[1024];
    job_json_batch_begin(&sink_batch, &job, 1, true);
    job_json_encode(&sink_batch, &job->view, buf, sizeof(buf)); /* keeps seq 3 */

    /* A plugin's own edited copy must not come back as the job's text. */
    aero_frame copy = job->view;
    copy.seq = 4;
    job_json_encode(&sink_batch, &copy, buf, sizeof(buf));
    job_json_batch_end(&sink_batch);
    char *want = fresh(&copy);
    cr_assert_str_eq(buf, want);
    free(want);
    job_free(job);
}

struct racer {
    struct job_json_batch batch; /* each sink has its own */
    struct frame_job **jobs;
    size_t n;
    char (*out)[1024];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    job_json_batch_begin(&r->batch, r->jobs, r->n, true);
    for (size_t i = 0; i < r->n; i++)
        job_json_encode(&r->batch, &r->jobs[i]->view, r->out[i], sizeof(r->out[i]));
    job_json_batch_end(&r->batch);
    return NULL;
}

Test(job_json, two_sink_threads_on_the_same_jobs_agree)
{
    enum { N = 2000 };
    struct frame_job **jobs = calloc(N, sizeof(*jobs));
    char(*out0)[1024] = calloc(N, 1024), (*out1)[1024] = calloc(N, 1024);
    cr_assert(jobs && out0 && out1);
    for (size_t i = 0; i < N; i++)
        jobs[i] = job_new(i + 1);
    struct racer r[2] = {{.jobs = jobs, .n = N, .out = out0}, {.jobs = jobs, .n = N, .out = out1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < N; i++) {
        char *want = fresh(&jobs[i]->view);
        cr_assert_str_eq(r[0].out[i], want, "seq %zu, thread 0", i + 1);
        cr_assert_str_eq(r[1].out[i], want, "seq %zu, thread 1", i + 1);
        free(want);
        job_free(jobs[i]);
    }
    free(jobs);
    free(out0);
    free(out1);
}

struct outsider {
    struct job_json_batch *batch;
    struct frame_job *job;
    char out[1024];
};

static void *encode_elsewhere(void *arg)
{
    struct outsider *o = arg;
    job_json_encode(o->batch, &o->job->view, o->out, sizeof(o->out));
    return NULL;
}

Test(job_json, a_thread_that_is_not_the_writer_neither_keeps_nor_advances)
{
    struct frame_job *job = job_new(7);
    job_json_batch_begin(&sink_batch, &job, 1, true);
    struct outsider o = {&sink_batch, job, {0}};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, encode_elsewhere, &o), 0);
    pthread_join(t, NULL);
    cr_assert_null(atomic_load(&job->json), "an outsider's encoding is not kept on the job");
    cr_assert_eq(sink_batch.next, 0, "nor does it move the writer's place in the batch");
    char buf[1024];
    job_json_encode(&sink_batch, &job->view, buf, sizeof(buf));
    job_json_batch_end(&sink_batch);
    cr_assert_not_null(atomic_load(&job->json), "the writer's own encoding is kept");
    cr_assert_str_eq(buf, o.out);
    job_free(job);
}
