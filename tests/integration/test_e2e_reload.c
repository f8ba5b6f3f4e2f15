/*
 * test_e2e_reload.c - SIGHUP changes the sinks of a running relay while
 * agents stream under load: a sink added, one removed, one changed (its
 * path), and a bad new section refused whole. The accounting is the
 * acked log's: every frame acked OK is in every sink of the set it was
 * submitted to, once; no stream sees an error; frames after a reload land
 * in the new sink.
 */
#include "harness.h"
#include "steady_agent.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define AGENTS 2
#define PROGRESS 300 /* acks each agent gets from every set of sinks */

static struct relay_proc relay;

static void stop(void)
{
    if (relay.pid)
        relay_stop(&relay, 20000);
}

TestSuite(reload, .fini = stop, .timeout = 240);

/* relay.ini's [sink:*] sections become `sinks` (%s: the scratch dir);
 * everything before them stays, listen addresses included. */
static void rewrite_sinks(const char *sinks)
{
    char *cfg = harness_read_file(relay.config, NULL);
    cr_assert_not_null(cfg);
    char *first = strstr(cfg, "[sink:");
    cr_assert_not_null(first);
    *first = '\0';
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s.new", relay.config);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs(cfg, f);
    fprintf(f, sinks, relay.dir, relay.dir, relay.dir);
    fclose(f);
    cr_assert_eq(rename(tmp, relay.config), 0); /* never a half-written file */
    free(cfg);
}

static double metric(const char *series) { return relay_metric(relay.http_port, series); }

/* SIGHUP, then wait until the relay counted the reload's outcome. */
static void reload(const char *result)
{
    char series[80];
    snprintf(series, sizeof(series), "aero_relay_config_reloads_total{result=\"%s\"}", result);
    double before = metric(series);
    cr_assert_eq(kill(relay.pid, SIGHUP), 0);
    cr_assert(relay_metric_reaches(relay.http_port, series, before + 1, 10000),
              "no %s reload counted", result);
}

static void expect_progress(struct steady_agent **a)
{
    for (int i = 0; i < AGENTS; i++)
        steady_agent_expect_progress(a[i], PROGRESS, 20000);
}

static int count_in_log(const char *needle)
{
    char *log = harness_read_file(relay.stderr_path, NULL);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p++)
        n++;
    free(log);
    return n;
}

/* The line of relay.ini that holds needle. */
static int line_of(const char *needle)
{
    char *cfg = harness_read_file(relay.config, NULL);
    cr_assert_not_null(cfg);
    char *at = strstr(cfg, needle);
    cr_assert_not_null(at, "%s not in relay.ini", needle);
    int line = 1;
    for (char *p = cfg; p < at; p++)
        line += *p == '\n';
    free(cfg);
    return line;
}

struct log_count {
    const char *needle;
    int want;
};

static bool logged(void *arg)
{
    struct log_count *c = arg;
    return count_in_log(c->needle) >= c->want;
}

/* How often each seq of each agent is in one sink's directory. */
struct tally {
    long n[AGENTS];      /* frames sent by agent i: seq 1..n[i] */
    int *times[AGENTS];  /* [seq] */
    uint64_t lo[AGENTS], hi[AGENTS]; /* the seqs seen, 0 0 when none */
};

static void seen(void *arg, const char *agent, uint64_t seq)
{
    struct tally *t = arg;
    int i = agent[strlen(agent) - 1] - '0';
    cr_assert(i >= 0 && i < AGENTS && seq >= 1 && (long)seq <= t->n[i], "stray %s seq %llu",
              agent, (unsigned long long)seq);
    t->times[i][seq]++;
    if (!t->lo[i] || seq < t->lo[i])
        t->lo[i] = seq;
    if (seq > t->hi[i])
        t->hi[i] = seq;
}

static void tally_dir(struct tally *t, const long *sent, const char *name)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/%s", relay.dir, name);
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < AGENTS; i++) {
        t->n[i] = sent[i];
        t->times[i] = calloc((size_t)sent[i] + 1, sizeof(int));
        cr_assert_not_null(t->times[i]);
    }
    harness_for_each_envelope(dir, false, seen, t);
}

static void tally_free(struct tally *t)
{
    for (int i = 0; i < AGENTS; i++)
        free(t->times[i]);
}

/*
 * [sink:keep] runs throughout; the second sink goes a -> b (one removed,
 * another added) -> c (changed: same name, another path). keep must hold
 * every acked frame once; a, b and c each frame once between them, in
 * order (a frame goes to one set, whole, and a stream's frames switch sets
 * at one point), the last frames in c.
 */
Test(reload, sinks_added_removed_and_changed_under_load_lose_no_acked_frame)
{
    static const char keep[] = "[sink:keep]\nplugin = sink-file\npath = %s/keep\n\n";
    char set_a[512], set_b[512], set_c[512], bad[768];
    snprintf(set_a, sizeof(set_a), "%s[sink:gone]\nplugin = sink-file\npath = %%s/a\n", keep);
    snprintf(set_b, sizeof(set_b), "%s[sink:fresh]\nplugin = sink-file\npath = %%s/b\n", keep);
    snprintf(set_c, sizeof(set_c), "%s[sink:fresh]\nplugin = sink-file\npath = %%s/c\n", keep);
    /* A path under a regular file: sink-file's check refuses it. */
    snprintf(bad, sizeof(bad), "%s[sink:fresh]\nplugin = sink-file\npath = %%s/c\n\n"
                               "[sink:bad]\nplugin = sink-file\npath = %%s/blocker/x\n", keep);
    harness_prepare(&relay);
    relay.http = true;
    relay.log_keys = "level = info\nformat = text\nsummary_interval_s = 1";
    char body[512];
    snprintf(body, sizeof(body), set_a, "%DIR%", "%DIR%");
    harness_write_config(&relay, NULL, body);
    relay_start(&relay);
    char blocker[400];
    snprintf(blocker, sizeof(blocker), "%s/blocker", relay.dir);
    FILE *bf = fopen(blocker, "w");
    cr_assert_not_null(bf);
    fclose(bf);

    struct steady_agent *a[AGENTS];
    a[0] = steady_agent_start(relay.target, "reload-0");
    a[1] = steady_agent_start(relay.target, "reload-1");
    expect_progress(a);

    rewrite_sinks(set_b); /* gone removed, fresh added */
    reload("ok");
    expect_progress(a);
    /* The summary line names the sinks running now. */
    struct log_count summary = {", sink fresh ", 1};
    cr_assert(harness_wait_for(logged, &summary, 10000), "no summary line of the new sinks");
    rewrite_sinks(set_c); /* fresh changed */
    reload("ok");
    expect_progress(a);
    cr_assert_eq(count_in_log("sinks: 1 kept, 1 started, 1 draining to stop"), 2,
                 "each reload says what it did to the sinks");
    struct log_count drained = {"drained and stopped", 2};
    cr_assert(harness_wait_for(logged, &drained, 10000), "the old sinks were not stopped");

    rewrite_sinks(bad);
    reload("error");
    cr_assert_eq(count_in_log("[sink:bad] path: cannot create or write"), 1,
                 "the refusal names the section and key");
    char where[420];
    snprintf(where, sizeof(where), "%s:%d:", relay.config, line_of("/blocker/x"));
    cr_assert_geq(count_in_log(where), 1, "the refusal names file and line (%s)", where);
    expect_progress(a); /* the old sinks keep working */

    long sent[AGENTS];
    for (int i = 0; i < AGENTS; i++)
        sent[i] = steady_agent_stop(a[i]);
    cr_assert_eq(metric("aero_relay_config_reloads_total{result=\"ok\"}"), 2);
    cr_assert_eq(metric("aero_relay_config_reloads_total{result=\"error\"}"), 1);

    struct tally k, ta, tb, tc;
    tally_dir(&k, sent, "keep");
    tally_dir(&ta, sent, "a");
    tally_dir(&tb, sent, "b");
    tally_dir(&tc, sent, "c");
    for (int i = 0; i < AGENTS; i++) {
        for (long seq = 1; seq <= sent[i]; seq++) {
            cr_assert_eq(k.times[i][seq], 1, "agent %d seq %ld is in keep %d times", i, seq,
                         k.times[i][seq]);
            int second = ta.times[i][seq] + tb.times[i][seq] + tc.times[i][seq];
            cr_assert_eq(second, 1, "agent %d seq %ld is in a, b, c %d times", i, seq, second);
        }
        cr_assert(ta.hi[i] && tb.lo[i] && tc.lo[i], "agent %d: a set got no frame", i);
        cr_assert(ta.hi[i] < tb.lo[i] && tb.hi[i] < tc.lo[i],
                  "agent %d switched sets more than once: a %llu-%llu b %llu-%llu c %llu-%llu",
                  i, (unsigned long long)ta.lo[i], (unsigned long long)ta.hi[i],
                  (unsigned long long)tb.lo[i], (unsigned long long)tb.hi[i],
                  (unsigned long long)tc.lo[i], (unsigned long long)tc.hi[i]);
        cr_assert_eq((long)tc.hi[i], sent[i], "the last frame lands in the new sink");
        cr_log_info("agent %d: %ld frames: a 1-%llu, b %llu-%llu, c %llu-%ld", i, sent[i],
                    (unsigned long long)ta.hi[i], (unsigned long long)tb.lo[i],
                    (unsigned long long)tb.hi[i], (unsigned long long)tc.lo[i], sent[i]);
    }
    tally_free(&k);
    tally_free(&ta);
    tally_free(&tb);
    tally_free(&tc);
    struct stat st;
    cr_assert_neq(stat(blocker, &st), -1);
    cr_assert(S_ISREG(st.st_mode), "the refused sink made nothing");
    /* Retired sinks and the reloads' settings freed (LeakSanitizer's exit
     * status in the sanitizer build). */
    struct rc_channel *none = NULL;
    harness_finish(&relay, &none);
}
