/*
 * test_e2e_control.c - the control plane and observability of the real
 * relay: RelayControl answers that follow the streams (every DroneStatus
 * field, NOT_FOUND / INVALID_ARGUMENT, no torn entries under churn),
 * /metrics checked by promtool and counted against what the test did,
 * /readyz turning 503 on SIGTERM before the drain ends, /healthz, 404/405,
 * JSON log lines without per-frame noise, and SIGHUP reopening sink files.
 */
#include "harness.h"
#include "http_client.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RELAY_ID "relay-ctl-7"

static struct relay_proc relay;
static struct rc_channel *ch;
static char hold[400];

static void start(const char *relay_extra, const char *body, const char *log_keys)
{
    harness_prepare(&relay);
    relay.http = true;
    relay.log_keys = log_keys;
    harness_setenv(&relay, "RELAY_ID", RELAY_ID);
    snprintf(hold, sizeof(hold), "%s/hold", relay.dir);
    ch = harness_start(&relay, relay_extra, body);
}

static void stop(void)
{
    unlink(hold); /* never leave a sink stuck behind a failed assertion */
    harness_finish(&relay, &ch);
}

TestSuite(control, .fini = stop, .timeout = 120);

static const char *file_sink =
    "[sink:archive]\nplugin = sink-file\npath = %DIR%/data\nprefix = t\nfsync = batch\n";

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------ helpers */

/* Send one frame and wait for its ack; returns the ack status. */
static int send_one(struct rc_stream *s, const struct rc_frame *f)
{
    struct rc_ack ack;
    cr_assert_eq(rc_stream_send_frame(s, f, 5000), 0);
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1, "no ack for seq %llu",
                 (unsigned long long)f->seq);
    cr_assert_eq(ack.seq, f->seq);
    return ack.status;
}

typedef void (*frame_maker)(size_t i, struct rc_frame *f, void *arg);

struct sent {
    size_t by_status[4];
    size_t bytes;
};

/* Send n frames (make() fills each) keeping at most 50 unacked; count the
 * acks by status and the bytes put on the wire. */
static void send_many(struct rc_stream *s, size_t n, frame_maker make, void *arg,
                      struct sent *out)
{
    size_t acked = 0;
    for (size_t i = 0; i < n; i++) {
        struct rc_frame f;
        make(i, &f, arg);
        uint8_t *bytes;
        size_t len;
        cr_assert_eq(rc_frame_encode(&f, &bytes, &len), 0);
        cr_assert_eq(rc_stream_send(s, bytes, len, 5000), 0);
        free(bytes);
        out->bytes += len;
        while (i + 1 - acked > 50 || (i + 1 == n && acked < n)) {
            struct rc_ack ack;
            cr_assert_eq(rc_stream_recv_ack(s, &ack, 5000), 1, "ack %zu missing", acked);
            cr_assert_lt(ack.status, 4);
            out->by_status[ack.status]++;
            acked++;
        }
    }
}

static struct rc_stream *open_stream(const char *agent)
{
    struct rc_status st;
    struct rc_stream *s = rc_stream_open(ch, agent, NULL, 0, &st);
    cr_assert_not_null(s, "%s", st.message);
    return s;
}

static void end_stream_ok(struct rc_stream *s)
{
    struct rc_status st;
    cr_assert_eq(rc_stream_close_send(s, 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 0, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);
}

static Aeroarc__Relay__V1__ListActiveDronesResponse *list(void)
{
    Aeroarc__Relay__V1__ListActiveDronesResponse *resp = NULL;
    struct rc_status st;
    int rc = rc_list_active_drones(ch, &resp, &st, 5000);
    cr_assert_eq(rc, 0, "ListActiveDrones: %s %s", rc_status_code_name(st.code), st.message);
    return resp;
}

static const Aeroarc__Relay__V1__DroneStatus *
find(const Aeroarc__Relay__V1__ListActiveDronesResponse *l, const char *drone)
{
    for (size_t i = 0; i < l->n_drones; i++)
        if (strcmp(l->drones[i]->drone_id, drone) == 0)
            return l->drones[i];
    return NULL;
}

/* GetDroneStatus: copies the status into out; returns the gRPC code. */
static int status_of(const char *drone, Aeroarc__Relay__V1__DroneStatus *out, char *session,
                     char *flight)
{
    Aeroarc__Relay__V1__GetDroneStatusResponse *resp = NULL;
    struct rc_status st;
    int rc = rc_get_drone_status(ch, drone, &resp, &st, 5000);
    if (rc == -EIO)
        return st.code;
    cr_assert_eq(rc, 0, "GetDroneStatus %s: %d", drone, rc);
    cr_assert_not_null(resp->drone);
    *out = *resp->drone;
    snprintf(session, 64, "%s", resp->drone->session_id);
    snprintf(flight, 160, "%s", resp->drone->flight_id);
    cr_assert_str_eq(resp->drone->drone_id, drone);
    cr_assert_str_eq(resp->drone->agent_id, drone);
    cr_assert_str_eq(resp->drone->relay_id, RELAY_ID);
    out->drone_id = out->agent_id = out->relay_id = out->session_id = out->flight_id = NULL;
    aeroarc__relay__v1__get_drone_status_response__free_unpacked(resp, NULL);
    return 0;
}

struct gone_check {
    const char *drone;
};

static bool drone_gone(void *arg)
{
    struct gone_check *g = arg;
    Aeroarc__Relay__V1__DroneStatus d;
    char session[64], flight[160];
    return status_of(g->drone, &d, session, flight) == 5 /* NOT_FOUND */;
}

static char *scrape(bool promtool)
{
    struct http_reply r;
    int rc = http_request(relay.http_port, "GET", "/metrics", 5000, &r);
    cr_assert_eq(rc, 0, "GET /metrics: %s", strerror(-rc));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    if (promtool) {
        char out[4096];
        int pc = http_promtool_check(r.body, r.body_len, out, sizeof(out));
        cr_assert_eq(pc, 0, "promtool check metrics (%d):\n%s", pc, out);
    }
    return r.body;
}

static double metric(const char *body, const char *series)
{
    double v = http_metric_value(body, series);
    cr_assert_geq(v, 0, "series %s missing from /metrics", series);
    return v;
}

/* ------------------------------------------------------------ threads */

/* True if one of pid's threads is called `name` (/proc/PID/task/TID/comm). */
static bool has_thread(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s", path);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char comm_path[sizeof(path) + sizeof(e->d_name) + 8], comm[32] = "";
        snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(comm_path, "r");
        if (f && fgets(comm, sizeof(comm), f))
            comm[strcspn(comm, "\n")] = '\0';
        if (f)
            fclose(f);
        found = strcmp(comm, name) == 0;
    }
    closedir(d);
    return found;
}

Test(control, threads_carry_names_an_operator_can_read)
{
    start(NULL, file_sink, NULL);
    /* The harness runs 2 workers; a sink thread is named after its section. */
    cr_assert(has_thread(relay.pid, "aero-grpc-0"), "no thread aero-grpc-0");
    cr_assert(has_thread(relay.pid, "aero-grpc-1"), "no thread aero-grpc-1");
    cr_assert(has_thread(relay.pid, "sink:archive"), "no thread sink:archive");
}

/* ------------------------------------------------------- RelayControl */

Test(control, drone_status_follows_registers_frames_and_disconnects)
{
    start(NULL, file_sink, NULL);
    const char *agents[] = {"ctl-a", "ctl-b", "ctl-c"};
    char sessions[3][64];
    int64_t t0 = wall_ns();
    for (int i = 0; i < 3; i++)
        harness_register(ch, agents[i], sessions[i], sizeof(sessions[i]));
    int64_t t1 = wall_ns();

    Aeroarc__Relay__V1__ListActiveDronesResponse *l = list();
    cr_assert_eq(l->n_drones, 3);
    int64_t connected[3];
    for (int i = 0; i < 3; i++) {
        const Aeroarc__Relay__V1__DroneStatus *d = find(l, agents[i]);
        cr_assert_not_null(d, "%s not listed", agents[i]);
        cr_assert_str_eq(d->agent_id, agents[i]);
        cr_assert_str_eq(d->session_id, sessions[i]);
        cr_assert_str_eq(d->relay_id, RELAY_ID);
        cr_assert_str_eq(d->flight_id, "");
        cr_assert(d->connected_at_unix_ns >= t0 && d->connected_at_unix_ns <= t1,
                  "connected_at %lld outside [%lld, %lld]", (long long)d->connected_at_unix_ns,
                  (long long)t0, (long long)t1);
        cr_assert_eq(d->last_heartbeat_unix_ns, d->connected_at_unix_ns,
                     "last_heartbeat starts at Register");
        connected[i] = d->connected_at_unix_ns;
    }
    aeroarc__relay__v1__list_active_drones_response__free_unpacked(l, NULL);

    struct rc_stream *a = open_stream("ctl-a");
    struct rc_stream *b = open_stream("ctl-b");
    Aeroarc__Relay__V1__DroneStatus d;
    char session[64], flight[160];

    struct rc_frame f = *harness_frame("ctl-a", 1); /* flight-7 */
    cr_assert_eq(send_one(a, &f), RC_ACK_OK);
    cr_assert_eq(status_of("ctl-a", &d, session, flight), 0);
    cr_assert_str_eq(session, sessions[0]);
    cr_assert_eq(d.connected_at_unix_ns, connected[0], "connected_at never moves");
    cr_assert_gt(d.last_heartbeat_unix_ns, connected[0]);
    cr_assert_leq(d.last_heartbeat_unix_ns, wall_ns());
    cr_assert_str_eq(flight, "flight-7");
    int64_t hb = d.last_heartbeat_unix_ns;

    f = *harness_frame("ctl-a", 2);
    f.flight_id = ""; /* keeps the last non-empty flight */
    cr_assert_eq(send_one(a, &f), RC_ACK_OK);
    cr_assert_eq(status_of("ctl-a", &d, session, flight), 0);
    cr_assert_gt(d.last_heartbeat_unix_ns, hb);
    cr_assert_str_eq(flight, "flight-7");
    hb = d.last_heartbeat_unix_ns;

    f = *harness_frame("ctl-a", 3);
    f.flight_id = "flight-8";
    cr_assert_eq(send_one(a, &f), RC_ACK_OK);
    cr_assert_eq(status_of("ctl-a", &d, session, flight), 0);
    cr_assert_str_eq(flight, "flight-8");
    cr_assert_gt(d.last_heartbeat_unix_ns, hb);
    hb = d.last_heartbeat_unix_ns;

    /* A rejected frame: the agent is alive, but its flight is not taken. */
    f = *harness_frame("someone-else", 4);
    f.flight_id = "flight-9";
    cr_assert_eq(send_one(a, &f), RC_ACK_PERMANENT_ERROR);
    cr_assert_eq(status_of("ctl-a", &d, session, flight), 0);
    cr_assert_gt(d.last_heartbeat_unix_ns, hb);
    cr_assert_str_eq(flight, "flight-8");

    /* b streams but sends nothing: its heartbeat is still the Register time. */
    cr_assert_eq(status_of("ctl-b", &d, session, flight), 0);
    cr_assert_str_eq(session, sessions[1]);
    cr_assert_eq(d.last_heartbeat_unix_ns, connected[1]);

    cr_assert_eq(status_of("", &d, session, flight), 3, "empty id: INVALID_ARGUMENT");
    cr_assert_eq(status_of("nobody-here", &d, session, flight), 5, "unknown: NOT_FOUND");

    /* Entries vanish when their stream ends, whichever way it ends; at
     * the agent's EOF before its OK arrives (no wait). */
    end_stream_ok(a);
    struct gone_check g = {"ctl-a"};
    cr_assert(drone_gone(&g), "ctl-a still listed when its stream's OK arrived");
    rc_stream_cancel(b);
    rc_stream_free(b);
    g.drone = "ctl-b";
    cr_assert(harness_wait_for(drone_gone, &g, 5000), "ctl-b still listed after cancel");

    l = list();
    cr_assert_eq(l->n_drones, 1, "only the registered-but-not-streaming ctl-c is left");
    cr_assert_str_eq(l->drones[0]->drone_id, "ctl-c");
    cr_assert_str_eq(l->drones[0]->session_id, sessions[2]);
    aeroarc__relay__v1__list_active_drones_response__free_unpacked(l, NULL);
}

/* Churn: agents register, stream a frame and go, over and over, while the
 * test lists. Every listed entry must be one the relay really issued, and a
 * session's fields must never change under it (no torn copies). */
#define CHURN_THREADS 4
#define CHURN_ROUNDS 30
#define CHURN_NAMES 3

struct issued {
    pthread_mutex_t mu;
    char (*pairs)[2][64]; /* agent, session */
    size_t n, cap;
    atomic_int running;
};

struct churner {
    struct issued *issued;
    int id;
};

static void *churn(void *arg)
{
    struct churner *c = arg;
    struct rc_channel *mine = rc_connect(relay.target);
    for (int r = 0; r < CHURN_ROUNDS; r++) {
        char agent[32], session[sizeof(((struct rc_register_result *)0)->session_id)];
        snprintf(agent, sizeof(agent), "churn-%d-%d", c->id, r % CHURN_NAMES);
        struct rc_register_result res;
        struct rc_status st;
        if (rc_register(mine, agent, "1", "x", &res, &st, 5000) != 0)
            continue;
        snprintf(session, sizeof(session), "%s", res.session_id);
        pthread_mutex_lock(&c->issued->mu);
        if (c->issued->n == c->issued->cap) {
            c->issued->cap = c->issued->cap ? c->issued->cap * 2 : 64;
            c->issued->pairs = realloc(c->issued->pairs, c->issued->cap * sizeof(*c->issued->pairs));
        }
        snprintf(c->issued->pairs[c->issued->n][0], 64, "%s", agent);
        snprintf(c->issued->pairs[c->issued->n][1], 64, "%.63s", session);
        c->issued->n++;
        pthread_mutex_unlock(&c->issued->mu);

        struct rc_stream *s = rc_stream_open(mine, agent, NULL, 0, &st);
        if (!s)
            continue;
        struct rc_ack ack;
        if (rc_stream_send_frame(s, harness_frame(agent, (uint64_t)r + 1), 5000) == 0)
            rc_stream_recv_ack(s, &ack, 5000);
        if (r % 2)
            rc_stream_cancel(s);
        rc_stream_finish(s, &st, 5000);
        rc_stream_free(s);
    }
    rc_close(mine);
    atomic_fetch_sub(&c->issued->running, 1);
    return NULL;
}

struct seen {
    char agent[64], session[64];
    int64_t connected, heartbeat;
};

static bool list_empty(void *arg)
{
    (void)arg;
    Aeroarc__Relay__V1__ListActiveDronesResponse *l = list();
    bool empty = l->n_drones == 0;
    aeroarc__relay__v1__list_active_drones_response__free_unpacked(l, NULL);
    return empty;
}

Test(control, listing_during_churn_shows_only_whole_real_sessions)
{
    start(NULL, file_sink, NULL);
    struct issued issued = {.mu = PTHREAD_MUTEX_INITIALIZER};
    atomic_init(&issued.running, CHURN_THREADS);
    pthread_t t[CHURN_THREADS];
    struct churner c[CHURN_THREADS];
    for (int i = 0; i < CHURN_THREADS; i++) {
        c[i] = (struct churner){&issued, i};
        pthread_create(&t[i], NULL, churn, &c[i]);
    }
    struct seen *seen = NULL;
    size_t n_seen = 0, cap = 0, lists = 0;
    while (atomic_load(&issued.running) > 0) {
        Aeroarc__Relay__V1__ListActiveDronesResponse *l = list();
        lists++;
        for (size_t i = 0; i < l->n_drones; i++) {
            const Aeroarc__Relay__V1__DroneStatus *d = l->drones[i];
            cr_assert_str_eq(d->drone_id, d->agent_id);
            cr_assert_eq(strncmp(d->drone_id, "churn-", 6), 0, "stranger %s", d->drone_id);
            cr_assert_str_eq(d->relay_id, RELAY_ID);
            cr_assert_eq(strlen(d->session_id), 37, "%s", d->session_id);
            cr_assert_gt(d->connected_at_unix_ns, 0);
            cr_assert_geq(d->last_heartbeat_unix_ns, d->connected_at_unix_ns);
            if (n_seen == cap) {
                cap = cap ? cap * 2 : 256;
                seen = realloc(seen, cap * sizeof(*seen));
            }
            snprintf(seen[n_seen].agent, 64, "%s", d->agent_id);
            snprintf(seen[n_seen].session, 64, "%s", d->session_id);
            seen[n_seen].connected = d->connected_at_unix_ns;
            seen[n_seen].heartbeat = d->last_heartbeat_unix_ns;
            n_seen++;
        }
        aeroarc__relay__v1__list_active_drones_response__free_unpacked(l, NULL);
    }
    for (int i = 0; i < CHURN_THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_gt(lists, 1);
    cr_assert_gt(issued.n, CHURN_THREADS * CHURN_ROUNDS / 2, "most registrations must work");

    for (size_t i = 0; i < n_seen; i++) {
        bool real = false;
        for (size_t k = 0; k < issued.n && !real; k++)
            real = strcmp(issued.pairs[k][0], seen[i].agent) == 0 &&
                   strcmp(issued.pairs[k][1], seen[i].session) == 0;
        cr_assert(real, "listed %s/%s was never issued to that agent", seen[i].agent,
                  seen[i].session);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(seen[k].session, seen[i].session) != 0)
                continue;
            cr_assert_eq(seen[k].connected, seen[i].connected, "connected_at of %s moved",
                         seen[i].session);
            cr_assert_leq(seen[k].heartbeat, seen[i].heartbeat, "heartbeat of %s went back",
                          seen[i].session);
        }
    }
    /* Every stream has ended: nothing is left. */
    cr_assert(harness_wait_for(list_empty, NULL, 5000), "sessions left after all streams ended");
    free(seen);
    free(issued.pairs);
}

/* ------------------------------------------------------------ /metrics */

static void make_named(size_t i, struct rc_frame *f, void *arg)
{
    const char *agent = arg;
    *f = *harness_frame(agent, i + 1);
    if (i >= 30 && i < 50)
        f->msg_name = "HEARTBEAT";
    if (i >= 50)
        f->agent_id = "not-this-agent"; /* PERMANENT_ERROR, not counted as a message */
}

static void make_many_names(size_t i, struct rc_frame *f, void *arg)
{
    static _Thread_local char name[32];
    *f = *harness_frame(arg, 1000 + i);
    if (i == 0)
        f->msg_name = "Q\"uo\\te\nX"; /* escaped on /metrics */
    else {
        snprintf(name, sizeof(name), "M%03zu", i - 1);
        f->msg_name = name;
    }
}

struct count_check {
    const char *series;
    double want;
};

static bool metric_reaches(void *arg)
{
    struct count_check *c = arg;
    char *body = scrape(false);
    double v = http_metric_value(body, c->series);
    free(body);
    return v == c->want;
}

Test(control, metrics_count_frames_acks_bytes_sessions_and_latency)
{
    /* Two instances of one plugin: their series must group under one
     * HELP/TYPE each for promtool to accept the page. */
    char body[1024];
    snprintf(body, sizeof(body),
             "%s\n[sink:mirror]\nplugin = sink-file\npath = %%DIR%%/mirror\nprefix = m\n",
             file_sink);
    start(NULL, body, NULL);
    char *before = scrape(true);
    cr_assert_not_null(strstr(before, "# TYPE aero_relay_ack_latency_seconds histogram"));
    cr_assert_eq(metric(before, "aero_relay_sessions_active"), 0);
    cr_assert_eq(metric(before, "aero_relay_messages_total{source=\"grpc\",message_type=\"other\"}"),
                 0);

    harness_register(ch, "met-1", NULL, 0);
    struct rc_stream *s = open_stream("met-1");
    struct sent sent = {{0}, 0};
    send_many(s, 53, make_named, "met-1", &sent);
    cr_assert_eq(sent.by_status[RC_ACK_OK], 50);
    cr_assert_eq(sent.by_status[RC_ACK_PERMANENT_ERROR], 3);

    /* The latency is observed when the ack's send completes on the relay,
     * which may be just after the agent has read it. */
    struct count_check lat = {"aero_relay_ack_latency_seconds_count",
                              metric(before, "aero_relay_ack_latency_seconds_count") + 53};
    cr_assert(harness_wait_for(metric_reaches, &lat, 5000), "ack latency count never reached 53");

    char *after = scrape(true);
#define DELTA(series) (metric(after, series) - metric(before, series))
    /* A fresh relay: these series did not exist before the first frame. */
    cr_assert_eq(metric(after, "aero_relay_messages_total{source=\"grpc\",message_type=\"GLOBAL_POSITION_INT\"}"),
                 30);
    cr_assert_eq(metric(after, "aero_relay_messages_total{source=\"grpc\",message_type=\"HEARTBEAT\"}"),
                 20);
    cr_assert_eq(DELTA("aero_relay_acks_total{status=\"ok\"}"), 50);
    cr_assert_eq(DELTA("aero_relay_acks_total{status=\"permanent_error\"}"), 3);
    cr_assert_eq(DELTA("aero_relay_acks_total{status=\"temporary_error\"}"), 0);
    cr_assert_eq(DELTA("aero_relay_frames_accepted_total"), 50);
    cr_assert_eq(DELTA("aero_relay_frames_received_bytes_total"), (double)sent.bytes);
    cr_assert_eq(DELTA("aero_relay_registrations_total"), 1);
    /* The process series every exporter has, and what this build is. */
    cr_assert_gt(metric(after, "process_resident_memory_bytes"), 1e6);
    cr_assert_gt(metric(after, "process_open_fds"), 3);
    cr_assert_geq(metric(after, "process_cpu_seconds_total"), metric(before, "process_cpu_seconds_total"));
    cr_assert_not_null(strstr(after, "\naero_relay_build_info{version=\""), "no build_info");
    cr_assert_eq(DELTA("aero_relay_streams_opened_total"), 1);
    cr_assert_eq(DELTA("aero_sink_enqueued_total{sink=\"archive\",plugin=\"sink-file\"}"), 50);
    cr_assert_eq(DELTA("aero_sink_enqueued_total{sink=\"mirror\",plugin=\"sink-file\"}"), 50);
    cr_assert_gt(
        DELTA("aero_sink_file_written_bytes_total{sink=\"mirror\",plugin=\"sink-file\"}"), 0);
    cr_assert_eq(DELTA("aero_sink_errors_total{sink=\"archive\",plugin=\"sink-file\"}"), 0);
    cr_assert_eq(metric(after, "aero_relay_sessions_active"), 1);
    cr_assert_eq(metric(after, "aero_relay_ack_latency_seconds_bucket{le=\"+Inf\"}"),
                 metric(after, "aero_relay_ack_latency_seconds_count"));
    cr_assert_gt(DELTA("aero_relay_ack_latency_seconds_sum"), 0);
    cr_assert_leq(metric(after, "aero_relay_ack_latency_seconds_bucket{le=\"0.0001\"}"),
                  metric(after, "aero_relay_ack_latency_seconds_bucket{le=\"10\"}"));
    free(before);
    free(after);

    /* Stream end: the session and its gauge go, the outcome is counted. */
    end_stream_ok(s);
    struct count_check gone = {"aero_relay_sessions_active", 0};
    cr_assert(harness_wait_for(metric_reaches, &gone, 5000));
    struct count_check closed = {"aero_relay_streams_closed_total{outcome=\"ok\"}", 1};
    cr_assert(harness_wait_for(metric_reaches, &closed, 5000));

    /* 301 more names: /metrics keeps 256 of them (GLOBAL_POSITION_INT,
     * HEARTBEAT, the odd one and 253 of M000..M299); the last 47 count as
     * "other". */
    harness_register(ch, "met-2", NULL, 0);
    s = open_stream("met-2");
    struct sent sent2 = {{0}, 0};
    send_many(s, 301, make_many_names, "met-2", &sent2);
    cr_assert_eq(sent2.by_status[RC_ACK_OK], 301);
    end_stream_ok(s);
    char *capped = scrape(true);
    size_t named = 0;
    double total = 0;
    const char *prefix = "aero_relay_messages_total{source=\"grpc\",message_type=\"";
    for (const char *l = strstr(capped, prefix); l; l = strstr(l + 1, prefix)) {
        if (l != capped && l[-1] != '\n')
            continue;
        total += strtod(strchr(l, '}') + 1, NULL);
        named += strncmp(l + strlen(prefix), "other\"", 6) != 0;
    }
    cr_assert_eq(named, 256, "distinct message_type values");
    cr_assert_eq(total, 50 + 301);
    cr_assert_eq(metric(capped, "aero_relay_messages_total{source=\"grpc\",message_type=\"other\"}"),
                 47);
    cr_assert_eq(metric(capped, "aero_relay_messages_total{source=\"grpc\",message_type=\"M252\"}"),
                 1);
    cr_assert_lt(http_metric_value(capped,
                                   "aero_relay_messages_total{source=\"grpc\",message_type=\"M253\"}"),
                 0, "M253 is past the cap");
    cr_assert_eq(metric(capped,
                        "aero_relay_messages_total{source=\"grpc\",message_type=\"Q\\\"uo\\\\te_X\"}"),
                 1);
    free(capped);
}

struct outcome_sum {
    double want;
};

static bool outcomes_reach(void *arg)
{
    struct outcome_sum *o = arg;
    char *body = scrape(false);
    double sum = 0;
    const char *names[] = {"ok", "error", "cancelled", "superseded"};
    for (int i = 0; i < 4; i++) {
        char series[96];
        snprintf(series, sizeof(series), "aero_relay_streams_closed_total{outcome=\"%s\"}",
                 names[i]);
        sum += http_metric_value(body, series);
    }
    free(body);
    return sum >= o->want;
}

Test(control, every_stream_end_is_counted_once_by_outcome)
{
    start(NULL, file_sink, NULL);
    struct rc_status st;

    /* Superseded first: were it also counted as cancelled, the extra count
     * would land long before the last stream below has ended. */
    harness_register(ch, "end-super", NULL, 0);
    struct rc_stream *s = open_stream("end-super");
    cr_assert_eq(send_one(s, harness_frame("end-super", 1)), RC_ACK_OK);
    harness_register(ch, "end-super", NULL, 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 10, "ABORTED: %s", rc_status_code_name(st.code));
    rc_stream_free(s);

    harness_register(ch, "end-ok", NULL, 0);
    s = open_stream("end-ok");
    cr_assert_eq(send_one(s, harness_frame("end-ok", 1)), RC_ACK_OK);
    end_stream_ok(s);

    harness_register(ch, "end-cancel", NULL, 0);
    s = open_stream("end-cancel");
    cr_assert_eq(send_one(s, harness_frame("end-cancel", 1)), RC_ACK_OK);
    rc_stream_cancel(s);
    rc_stream_free(s);

    harness_register(ch, "end-error", NULL, 0);
    s = open_stream("end-error");
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(rc_stream_send(s, garbage, sizeof(garbage), 5000), 0);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 3, "INVALID_ARGUMENT: %s", rc_status_code_name(st.code));
    rc_stream_free(s);

    struct outcome_sum four = {4};
    cr_assert(harness_wait_for(outcomes_reach, &four, 5000), "stream ends not all counted");
    char *m = scrape(true);
    cr_assert_eq(metric(m, "aero_relay_streams_opened_total"), 4);
    cr_assert_eq(metric(m, "aero_relay_streams_closed_total{outcome=\"superseded\"}"), 1, "%s", m);
    cr_assert_eq(metric(m, "aero_relay_streams_closed_total{outcome=\"ok\"}"), 1);
    cr_assert_eq(metric(m, "aero_relay_streams_closed_total{outcome=\"cancelled\"}"), 1);
    cr_assert_eq(metric(m, "aero_relay_streams_closed_total{outcome=\"error\"}"), 1);
    cr_assert_eq(metric(m, "aero_relay_registrations_total"), 5);
    free(m);
}

/* ------------------------------------------------ health and readiness */

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
}

static bool not_ready(void *arg)
{
    (void)arg;
    return http_get_status(relay.http_port, "/readyz", 2000) == 503;
}

static bool alive(void)
{
    int status;
    return waitpid(relay.pid, &status, WNOHANG) == 0;
}

Test(control, readyz_turns_503_on_sigterm_before_the_drain_ends)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "[sink:ctl]\nplugin = test-sink-control\nhold_file = %%DIR%%/hold\n");
    start("shutdown_grace_s = 30\n", body, NULL);

    struct http_reply r;
    cr_assert_eq(http_request(relay.http_port, "GET", "/readyz", 5000, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_reply_free(&r);
    cr_assert_eq(http_request(relay.http_port, "GET", "/healthz", 5000, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_reply_free(&r);
    cr_assert_eq(http_get_status(relay.http_port, "/", 5000), 404);
    cr_assert_eq(http_get_status(relay.http_port, "/metricsz", 5000), 404);
    cr_assert_eq(http_request(relay.http_port, "POST", "/readyz", 5000, &r), 0);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(r.allow, "GET, HEAD");
    http_reply_free(&r);
    cr_assert_eq(http_request(relay.http_port, "DELETE", "/metrics", 5000, &r), 0);
    cr_assert_eq(r.status, 405);
    http_reply_free(&r);

    /* A frame stuck in the sink keeps the stream, and so the drain, open. */
    harness_register(ch, "ready-1", NULL, 0);
    struct rc_stream *s = open_stream("ready-1");
    cr_assert_eq(send_one(s, harness_frame("ready-1", 1)), RC_ACK_OK);
    touch(hold);
    cr_assert_eq(rc_stream_send_frame(s, harness_frame("ready-1", 2), 5000), 0);
    /* Sent is not read: wait until the relay has it, so the ack is owed. */
    struct count_check read2 = {"aero_relay_frames_accepted_total", 2};
    cr_assert(harness_wait_for(metric_reaches, &read2, 5000), "frame 2 never reached the sink");

    kill(relay.pid, SIGTERM);
    cr_assert(harness_wait_for(not_ready, NULL, 5000), "/readyz never turned 503");
    cr_assert(alive(), "the relay must still be draining");
    cr_assert_eq(http_get_status(relay.http_port, "/healthz", 5000), 200);
    char *m = scrape(true); /* scrapeable through the drain */
    cr_assert_eq(metric(m, "aero_relay_sessions_active"), 1, "%s", m);
    free(m);
    struct rc_status st;
    cr_assert_eq(rc_register(ch, "ready-2", "1", "x", NULL, &st, 5000), -EIO);
    cr_assert_eq(st.code, 14, "new calls get UNAVAILABLE: %s", rc_status_code_name(st.code));
    cr_assert(alive());

    /* Release the sink: the owed ack arrives, then UNAVAILABLE, then exit 0. */
    unlink(hold);
    struct rc_ack ack;
    cr_assert_eq(rc_stream_recv_ack(s, &ack, 10000), 1);
    cr_assert_eq(ack.seq, 2);
    cr_assert_eq(ack.status, RC_ACK_OK);
    cr_assert_eq(rc_stream_finish(s, &st, 10000), 0);
    cr_assert_eq(st.code, 14, "%s %s", rc_status_code_name(st.code), st.message);
    rc_stream_free(s);
    cr_assert_eq(relay_stop(&relay, 20000), 0);
}

Test(control, http_port_in_use_stops_the_relay_at_start)
{
    harness_prepare(&relay);
    relay.http = true;
    harness_write_config(&relay, NULL, file_sink);
    /* Take the HTTP port first. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)relay.http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 1), 0);
    char out[4096];
    const char *args[] = {"-c", relay.config, NULL};
    int rc = relay_run_cli(args, out, sizeof(out));
    close(fd);
    cr_assert_neq(rc, 0, "the relay must not run without its HTTP port");
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", relay.http_port);
    cr_assert_not_null(strstr(out, "cannot listen for HTTP"), "%s", out);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert_not_null(strstr(out, "Address already in use"), "%s", out);
}

/* ----------------------------------------------------------------- logs */

static void make_plain(size_t i, struct rc_frame *f, void *arg)
{
    *f = *harness_frame(arg, i + 1);
}

Test(control, logs_are_json_lines_with_no_per_frame_noise)
{
    start(NULL, file_sink, "level = info\nformat = json");
    harness_register(ch, "log-1", NULL, 0);
    struct rc_stream *s = open_stream("log-1");
    struct sent sent = {{0}, 0};
    send_many(s, 200, make_plain, "log-1", &sent);
    cr_assert_eq(sent.by_status[RC_ACK_OK], 200);
    end_stream_ok(s);
    kill(relay.pid, SIGHUP);
    rc_close(ch);
    ch = NULL;
    cr_assert_eq(relay_stop(&relay, 20000), 0);

    /* An independent parser: every line one JSON object with ts/level/msg. */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys\n"
             "n=0\n"
             "for line in sys.stdin:\n"
             "  d=json.loads(line); n+=1\n"
             "  assert isinstance(d,dict) and {\"ts\",\"level\",\"msg\"} <= d.keys(), line\n"
             "  assert d[\"level\"] in (\"info\",\"warn\",\"error\"), line\n"
             "assert n > 0' < %s",
             relay.stderr_path);
    cr_assert_eq(system(cmd), 0, "relay log is not JSON lines");

    char *log = harness_read_file(relay.stderr_path, NULL);
    size_t lines = 0;
    for (const char *p = log; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_lt(lines, 20, "200 frames must not log per frame at info:\n%s", log);
    char want[80];
    snprintf(want, sizeof(want), "HTTP on 127.0.0.1:%d", relay.http_port);
    cr_assert_not_null(strstr(log, want), "start-up line names the HTTP address:\n%s", log);
    cr_assert_not_null(strstr(log, "\"msg\":\"SIGHUP"), "%s", log);
    cr_assert_not_null(strstr(log, "stopped cleanly"), "%s", log);
    free(log);
}

/* ---------------------------------------------------------------- SIGHUP */

/* The seq numbers in a JSON-lines file, as a bitmap over 1..64. */
static uint64_t seqs_in(const char *path, size_t *lines)
{
    char *text = harness_read_file(path, NULL);
    cr_assert_not_null(text, "%s", path);
    uint64_t bits = 0;
    *lines = 0;
    for (const char *p = text; (p = strstr(p, "\"seq\":")); p++) {
        unsigned long long seq = strtoull(p + 6, NULL, 10);
        cr_assert(seq >= 1 && seq <= 64);
        bits |= 1ULL << (seq - 1);
        (*lines)++;
    }
    free(text);
    return bits;
}

/* The one .jsonl file in dir (path into out); fails unless exactly one. */
static void only_jsonl(const char *dir, char *out, size_t outlen)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 6 && strcmp(e->d_name + l - 6, ".jsonl") == 0) {
            snprintf(out, outlen, "%s/%s", dir, e->d_name);
            n++;
        }
    }
    closedir(d);
    cr_assert_eq(n, 1, "expected one .jsonl in %s, found %d", dir, n);
}

static bool reopen_logged(void *arg)
{
    (void)arg;
    char *log = harness_read_file(relay.stderr_path, NULL);
    bool seen = log && strstr(log, "SIGHUP: sink outputs reopen");
    free(log);
    return seen;
}

Test(control, sighup_reopens_the_sink_file_after_it_was_moved)
{
    start(NULL, file_sink, NULL);
    harness_register(ch, "hup-1", NULL, 0);
    struct rc_stream *s = open_stream("hup-1");
    for (uint64_t seq = 1; seq <= 10; seq++)
        cr_assert_eq(send_one(s, harness_frame("hup-1", seq)), RC_ACK_OK);

    char data[400], first[700], moved[400], second[700];
    snprintf(data, sizeof(data), "%s/data", relay.dir);
    snprintf(moved, sizeof(moved), "%s/moved.jsonl", relay.dir);
    only_jsonl(data, first, sizeof(first));
    cr_assert_eq(rename(first, moved), 0); /* what logrotate does */

    kill(relay.pid, SIGHUP);
    cr_assert(harness_wait_for(reopen_logged, NULL, 5000), "SIGHUP not acted on");
    for (uint64_t seq = 11; seq <= 20; seq++)
        cr_assert_eq(send_one(s, harness_frame("hup-1", seq)), RC_ACK_OK);

    only_jsonl(data, second, sizeof(second));
    size_t n_old, n_new;
    cr_assert_eq(seqs_in(moved, &n_old), 0x3ffULL, "frames 1-10 stay in the moved file");
    cr_assert_eq(n_old, 10);
    cr_assert_eq(seqs_in(second, &n_new), 0x3ffULL << 10, "frames 11-20 go to a new file");
    cr_assert_eq(n_new, 10);
    end_stream_ok(s);
}

/* ---- a list longer than gRPC's default 4 MiB message ------------------- */

/*
 * max_sessions' default of sessions, with ids like "drone-000042"
 * (ListActiveDrones: about 11 MB). Under the sanitizers, which make each
 * Register several times slower, fewer sessions with 120-byte ids make an
 * answer over 4 MiB all the same (about 5 MB).
 */
#if defined(__SANITIZE_ADDRESS__)
#define BIG_LIST_AGENTS 16000
#define BIG_LIST_ID_BYTES 120
#else
#define BIG_LIST_AGENTS 100000
#define BIG_LIST_ID_BYTES 12
#endif
#define BIG_LIST_THREADS 4

/* Agent i's id: "drone-" and i, padded with zeros to BIG_LIST_ID_BYTES. */
static void big_id(char out[128], int i)
{
    char digits[16];
    int n = snprintf(digits, sizeof(digits), "%d", i);
    memcpy(out, "drone-", 6);
    size_t pad = BIG_LIST_ID_BYTES - 6 - (size_t)n;
    memset(out + 6, '0', pad);
    memcpy(out + 6 + pad, digits, (size_t)n + 1);
}
struct registrar {
    int from, to;
    int failed;
};

static void *register_range(void *arg)
{
    struct registrar *r = arg;
    struct rc_channel *c = rc_connect(relay.target);
    char id[128];
    for (int i = r->from; i < r->to && c; i++) {
        struct rc_status st;
        big_id(id, i);
        if (rc_register(c, id, "1", "x", NULL, &st, 10000) != 0)
            r->failed++;
    }
    rc_close(c);
    return NULL;
}

/* ListActiveDrones over 4 MiB (gRPC's default receive limit) reaches
 * `aeroarc-client list` whole: one line per drone. */
Test(control, aeroarc_client_lists_more_than_4_mib_of_sessions)
{
    start("", "[route]\nplugin = route-none\nttl_s = 3600\n[sink:out]\nplugin = sink-stdout\n",
          NULL);
    pthread_t t[BIG_LIST_THREADS];
    struct registrar r[BIG_LIST_THREADS];
    int64_t t0 = wall_ns();
    for (int i = 0; i < BIG_LIST_THREADS; i++) {
        r[i] = (struct registrar){.from = i * BIG_LIST_AGENTS / BIG_LIST_THREADS,
                                  .to = (i + 1) * BIG_LIST_AGENTS / BIG_LIST_THREADS};
        pthread_create(&t[i], NULL, register_range, &r[i]);
    }
    for (int i = 0; i < BIG_LIST_THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(r[i].failed, 0, "thread %d: %d registrations failed", i, r[i].failed);
    }
    int64_t reg_ms = (wall_ns() - t0) / 1000000;

    /* The answer is over 4 MiB: a client with the default limit refuses it. */
    struct rc_status st;
    Aeroarc__Relay__V1__ListActiveDronesResponse *list = NULL;
    cr_assert_eq(rc_list_active_drones(ch, &list, &st, 30000), -EIO);
    cr_assert_eq(st.code, 8, "%s %s", rc_status_code_name(st.code), st.message);
    struct rc_opts big = {.max_recv_bytes = 64 << 20};
    struct rc_channel *wide = rc_connect_opts(relay.target, &big, &st);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    cr_assert_eq(rc_unary(wide, "/aeroarc.relay.v1.RelayControl/ListActiveDrones", NULL, 0, NULL,
                          0, &resp, &resp_len, &st, 30000),
                 0, "%s", st.message);
    cr_assert_gt(resp_len, (size_t)4 << 20, "the answer is %zu bytes", resp_len);
    free(resp);
    rc_close(wide);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "timeout 60 %s/aeroarc-client --target %s --timeout 30000 list",
             AERO_BINARY_DIR, relay.target);
    int64_t t1 = wall_ns();
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char line[2048];
    size_t lines = 0, mine = 0;
    while (fgets(line, sizeof(line), p)) {
        lines++;
        if (strstr(line, "drone-") && strstr(line, RELAY_ID))
            mine++;
    }
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "aeroarc-client list: %#x", status);
    cr_assert_eq(lines, BIG_LIST_AGENTS);
    cr_assert_eq(mine, BIG_LIST_AGENTS);
    cr_log_info("%d registrations in %lld ms; %zu bytes listed in %lld ms", BIG_LIST_AGENTS,
                (long long)reg_ms, resp_len, (long long)((wall_ns() - t1) / 1000000));
}
