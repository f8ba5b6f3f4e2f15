/*
 * test_e2e_valgrind.c - the relay under valgrind (memcheck, full leak
 * check) through a short session touching most of its paths: streams into
 * sink-file (fsync = batch) and sink-stdout, refused frames, a malformed and
 * an oversized message, supersession, a cancelled stream, the session cap,
 * RelayControl, /metrics, SIGHUP, and a stream still open at SIGTERM. Any
 * memory error or leak (tests/valgrind.supp lists the accepted ones) makes
 * valgrind exit 99 instead of the relay's 0. Not in the ASan build: the
 * two cannot be combined.
 */
#include "harness.h"
#include "steady_agent.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct relay_proc relay;
static char wrapper[1024], vg_log[400];

static void stop(void)
{
    if (relay.pid)
        relay_kill(&relay);
}

TestSuite(valgrind, .fini = stop, .timeout = 240);

/* Stream n frames for agent on ch with a window, every ack OK. */
static void stream_ok(struct rc_channel *ch, const char *agent, int n)
{
    struct rc_status st;
    struct rc_ack ack;
    struct rc_stream *s = rc_stream_open(ch, agent, NULL, 0, &st);
    cr_assert_not_null(s);
    int acked = 0;
    for (int seq = 1; seq <= n; seq++) {
        cr_assert_eq(rc_stream_send_frame(s, harness_frame(agent, (uint64_t)seq), 20000), 0);
        if (seq > 20) {
            cr_assert_eq(rc_stream_recv_ack(s, &ack, 20000), 1);
            cr_assert_eq(ack.status, RC_ACK_OK);
            acked++;
        }
    }
    while (acked < n) {
        cr_assert_eq(rc_stream_recv_ack(s, &ack, 20000), 1);
        cr_assert_eq(ack.status, RC_ACK_OK);
        acked++;
    }
    rc_stream_close_send(s, 20000);
    cr_assert_eq(rc_stream_finish(s, &st, 20000), 0);
    cr_assert_eq(st.code, 0, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);
}

/* One message on a fresh stream; returns the stream's final status code. */
static int one_message(struct rc_channel *ch, const char *agent, const uint8_t *msg, size_t len)
{
    struct rc_status st;
    struct rc_ack ack;
    struct rc_stream *s = rc_stream_open(ch, agent, NULL, 0, &st);
    cr_assert_not_null(s);
    rc_stream_send(s, msg, len, 20000);
    while (rc_stream_recv_ack(s, &ack, 20000) == 1)
        ;
    rc_stream_finish(s, &st, 20000);
    rc_stream_free(s);
    return st.code;
}

Test(valgrind, a_short_session_has_no_memory_errors_or_leaks)
{
    harness_prepare(&relay);
    snprintf(vg_log, sizeof(vg_log), "%s/valgrind.log", relay.dir);
    snprintf(wrapper, sizeof(wrapper),
             "valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,"
             "possible --errors-for-leak-kinds=definite,indirect,possible --num-callers=40 "
             "--suppressions=%s/tests/valgrind.supp --log-file=%s",
             AERO_SOURCE_DIR, vg_log);
    relay.wrapper = wrapper;
    relay.http = true;
    harness_write_config(&relay, "max_sessions = 4\nshutdown_grace_s = 20\nmax_message_bytes = 4096\n"
                         /* valgrind's own memory counts in the relay's RSS: the default
                          * limit (128 MiB here) would shed the test's connections */
                         "memory_limit_mb = 65536\n",
                         "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\nfsync = batch\n"
                         "[sink:console]\nplugin = sink-stdout\n");
    relay_start(&relay);
    struct rc_channel *ch = rc_connect(relay.target);
    struct rc_status st;

    /* Three agents stream; one of them twice (a second session). */
    harness_register(ch, "drone-v1", NULL, 0);
    harness_register(ch, "drone-v2", NULL, 0);
    harness_register(ch, "drone-v3", NULL, 0);
    stream_ok(ch, "drone-v1", 200);
    stream_ok(ch, "drone-v2", 200);
    harness_register(ch, "drone-v1", NULL, 0);
    stream_ok(ch, "drone-v1", 50);

    /* Refused frames: another agent's id (PERMANENT_ERROR, stream goes on),
     * a malformed message, one over max_message_bytes. */
    struct rc_frame f = *harness_frame("drone-other", 1);
    uint8_t *bytes;
    size_t len;
    cr_assert_eq(rc_frame_encode(&f, &bytes, &len), 0);
    harness_register(ch, "drone-v4", NULL, 0);
    cr_assert_eq(one_message(ch, "drone-v4", bytes, len), 0);
    free(bytes);
    harness_register(ch, "drone-v4", NULL, 0);
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    cr_assert_eq(one_message(ch, "drone-v4", junk, sizeof(junk)), 3 /* INVALID_ARGUMENT */);
    static uint8_t big[8192];
    harness_register(ch, "drone-v4", NULL, 0);
    cr_assert_eq(one_message(ch, "drone-v4", big, sizeof(big)), 8 /* RESOURCE_EXHAUSTED */);

    /* Supersession of an open stream, then a cancelled one. */
    harness_register(ch, "drone-v5", NULL, 0);
    struct rc_stream *old = rc_stream_open(ch, "drone-v5", NULL, 0, &st);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_send_frame(old, harness_frame("drone-v5", 1), 20000), 0);
    cr_assert_eq(rc_stream_recv_ack(old, &ack, 20000), 1);
    harness_register(ch, "drone-v5", NULL, 0);
    cr_assert_eq(rc_stream_finish(old, &st, 20000), 0);
    cr_assert_eq(st.code, 10 /* ABORTED */);
    rc_stream_free(old);
    struct rc_stream *gone = rc_stream_open(ch, "drone-v5", NULL, 0, &st);
    cr_assert_eq(rc_stream_send_frame(gone, harness_frame("drone-v5", 2), 20000), 0);
    cr_assert_eq(rc_stream_recv_ack(gone, &ack, 20000), 1);
    rc_stream_free(gone); /* cancels */

    /* The session cap, RelayControl, an unknown method, metrics, SIGHUP. */
    harness_register(ch, "drone-v6", NULL, 0);
    struct rc_register_result res;
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof(id), "drone-cap-%d", i);
        rc_register(ch, id, "t", "linux", &res, &st, 20000); /* the last ones are refused */
    }
    cr_assert_eq(st.code, 8, "the cap refuses: %s", rc_status_code_name(st.code));
    Aeroarc__Relay__V1__ListActiveDronesResponse *list = NULL;
    cr_assert_eq(rc_list_active_drones(ch, &list, &st, 20000), 0);
    aeroarc__relay__v1__list_active_drones_response__free_unpacked(list, NULL);
    Aeroarc__Relay__V1__GetDroneStatusResponse *one = NULL;
    cr_assert_eq(rc_get_drone_status(ch, "drone-v3", &one, &st, 20000), 0);
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(one, NULL);
    cr_assert_eq(rc_get_drone_status(ch, "drone-nobody", &one, &st, 20000), -EIO);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    rc_unary(ch, "/aeroarc.agent.v1.AgentGateway/Nope", NULL, 0, NULL, 0, &resp, &resp_len, &st,
             20000);
    free(resp);
    cr_assert_eq(st.code, 12 /* UNIMPLEMENTED */);
    cr_assert_eq(relay_metric(relay.http_port, "aero_relay_sessions_rejected_total"), 2);
    kill(relay.pid, SIGHUP);

    /* A stream still open when SIGTERM comes: acked, then UNAVAILABLE. */
    struct rc_stream *open = rc_stream_open(ch, "drone-v3", NULL, 0, &st);
    cr_assert_eq(rc_stream_send_frame(open, harness_frame("drone-v3", 1), 20000), 0);
    cr_assert_eq(rc_stream_recv_ack(open, &ack, 20000), 1);
    int status = relay_stop(&relay, 120000);
    rc_stream_finish(open, &st, 20000);
    rc_stream_free(open);
    rc_close(ch);
    char *log = status == 0 ? NULL : harness_read_file(vg_log, NULL);
    cr_assert_eq(status, 0, "exit status %d under valgrind (99: errors or leaks); log:\n%s",
                 status, log ? log : "(none)");
    free(log);
}
