/*
 * alloc-census.so: an LD_PRELOAD shim that counts the relay's live heap by
 * who asked for it, so docs/benchmarks.md can split the memory of an open
 * stream into gRPC's part and the relay's own (issue 19) from a
 * measurement, not an estimate. A benchmark tool: never linked into the
 * relay, never installed.
 *
 *   AERO_ALLOC_CENSUS=/tmp/census.txt LD_PRELOAD=build/alloc-census.so \
 *       build/aeroarc-relay -c relay.ini
 *
 * Every allocation is charged to its site: the first frame of its call
 * stack outside the allocator itself (libc, libstdc++'s operator new,
 * libgcc, gpr_malloc's libgpr, this shim). A site belongs to "grpc"
 * (libgrpc, libgpr, absl, upb, re2, c-ares, OpenSSL, zlib), to "relay"
 * (the relay's binary, its plugins, protobuf-c, which only the relay
 * calls) or to "other". Once a second the file is rewritten with the live
 * bytes per class (requested and as malloc_usable_size sees them) and the
 * largest sites, symbolised; `<file>.peak` keeps the report of the moment
 * the live total was highest.
 *
 * Cost: a backtrace and a locked hash insert per allocation, so a relay
 * under the shim is several times slower: measure memory with it, never
 * time.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define DEPTH 16
#define LIVE_BITS 23 /* 8M live allocations */
#define SITE_BITS 16
#define TOP_SITES 30

enum cls { CLS_OTHER, CLS_GRPC, CLS_RELAY, N_CLS };
static const char *const cls_name[N_CLS] = {"other", "grpc", "relay"};

struct live {
    uintptr_t ptr; /* 0: empty slot */
    size_t size, usable;
    uint32_t site;
};

struct site {
    uintptr_t pc; /* 0: empty slot */
    enum cls cls;
    size_t bytes, usable, count;
};

/* Address ranges of the objects whose frames are the allocator, not a
 * caller. */
struct range {
    uintptr_t lo, hi;
};

static struct live *lives;
static struct site *sites;
static struct range skip[16];
static int n_skip;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static size_t cls_bytes[N_CLS], cls_usable[N_CLS], peak_total;
static int ready;
static __thread int inside; /* this thread is in the shim: do not count */

static const char *base_name(const char *path)
{
    const char *s = path ? strrchr(path, '/') : NULL;
    return s ? s + 1 : path ? path : "";
}

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int skip_object(const char *name)
{
    return starts(name, "libc.so") || starts(name, "libstdc++") || starts(name, "libgcc_s") ||
           starts(name, "libgpr") || starts(name, "ld-linux") || strstr(name, "alloc-census");
}

static int add_skip_ranges(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (!skip_object(base_name(info->dlpi_name)))
        return 0;
    for (int i = 0; i < info->dlpi_phnum && n_skip < 16; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            skip[n_skip++] = (struct range){info->dlpi_addr + ph->p_vaddr,
                                            info->dlpi_addr + ph->p_vaddr + ph->p_memsz};
    }
    return 0;
}

static int skipped(uintptr_t pc)
{
    for (int i = 0; i < n_skip; i++)
        if (pc >= skip[i].lo && pc < skip[i].hi)
            return 1;
    return 0;
}

static enum cls classify(uintptr_t pc)
{
    Dl_info info;
    if (!dladdr((void *)pc, &info) || !info.dli_fname)
        return CLS_OTHER;
    const char *n = base_name(info.dli_fname);
    static const char *const grpc[] = {"libgrpc", "libgpr", "libabsl", "libupb", "libaddress_sorting",
                                       "libre2", "libcares", "libssl", "libcrypto", "libz."};
    for (size_t i = 0; i < sizeof(grpc) / sizeof(*grpc); i++)
        if (starts(n, grpc[i]))
            return CLS_GRPC;
    if (starts(n, "aeroarc-relay") || starts(n, "sink-") || starts(n, "route-") ||
        starts(n, "libprotobuf-c"))
        return CLS_RELAY;
    return CLS_OTHER;
}

static size_t hash(uintptr_t v, int bits)
{
    return (size_t)((v * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* Under mu: the site of pc, created on first sight. */
static uint32_t site_of(uintptr_t pc)
{
    size_t mask = ((size_t)1 << SITE_BITS) - 1;
    for (size_t i = hash(pc, SITE_BITS);; i = (i + 1) & mask) {
        if (sites[i].pc == pc)
            return (uint32_t)i;
        if (sites[i].pc == 0) {
            sites[i].pc = pc;
            sites[i].cls = classify(pc);
            return (uint32_t)i;
        }
    }
}

static void track(void *p, size_t size)
{
    if (!p || !ready || inside)
        return;
    inside = 1;
    void *frames[DEPTH];
    int n = backtrace(frames, DEPTH);
    uintptr_t pc = 0;
    for (int i = 1; i < n && !pc; i++)
        if (!skipped((uintptr_t)frames[i]))
            pc = (uintptr_t)frames[i];
    size_t usable = malloc_usable_size(p);
    pthread_mutex_lock(&mu);
    uint32_t s = site_of(pc ? pc : 1);
    size_t mask = ((size_t)1 << LIVE_BITS) - 1;
    size_t i = hash((uintptr_t)p, LIVE_BITS);
    while (lives[i].ptr != 0)
        i = (i + 1) & mask;
    lives[i] = (struct live){(uintptr_t)p, size, usable, s};
    sites[s].bytes += size;
    sites[s].usable += usable;
    sites[s].count++;
    cls_bytes[sites[s].cls] += size;
    cls_usable[sites[s].cls] += usable;
    pthread_mutex_unlock(&mu);
    inside = 0;
}

/* Linear probing with backward-shift deletion: no tombstones to pile up. */
static void untrack(void *p)
{
    if (!p || !ready)
        return;
    size_t mask = ((size_t)1 << LIVE_BITS) - 1;
    pthread_mutex_lock(&mu);
    size_t i = hash((uintptr_t)p, LIVE_BITS);
    while (lives[i].ptr != 0 && lives[i].ptr != (uintptr_t)p)
        i = (i + 1) & mask;
    if (lives[i].ptr == (uintptr_t)p) {
        struct site *s = &sites[lives[i].site];
        s->bytes -= lives[i].size;
        s->usable -= lives[i].usable;
        s->count--;
        cls_bytes[s->cls] -= lives[i].size;
        cls_usable[s->cls] -= lives[i].usable;
        size_t hole = i;
        for (size_t j = (i + 1) & mask; lives[j].ptr != 0; j = (j + 1) & mask) {
            size_t home = hash(lives[j].ptr, LIVE_BITS);
            /* j may move back into the hole unless its home lies after
             * the hole (cyclically): it must stay reachable from home. */
            if (((j - home) & mask) >= ((j - hole) & mask)) {
                lives[hole] = lives[j];
                hole = j;
            }
        }
        lives[hole].ptr = 0;
    }
    pthread_mutex_unlock(&mu);
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    track(p, n);
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p = __libc_calloc(a, b);
    track(p, a * b);
    return p;
}

void *realloc(void *old, size_t n)
{
    untrack(old);
    void *p = __libc_realloc(old, n);
    if (!p && old && n) /* the old block is still there, and still counted */
        track(old, malloc_usable_size(old));
    track(p, n);
    return p;
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    track(p, n);
    return p;
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

static int by_usable(const void *a, const void *b)
{
    const struct site *x = a, *y = b;
    return x->usable < y->usable ? 1 : x->usable > y->usable ? -1 : 0;
}

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Write the report to path (via a temporary file, renamed). */
static void report(const char *path, const struct site *top, size_t n_top, const size_t *bytes,
                   const size_t *usable)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "rss_kb %ld\n", rss_kb());
    for (int c = 0; c < N_CLS; c++)
        fprintf(f, "class %s bytes %zu usable %zu\n", cls_name[c], bytes[c], usable[c]);
    for (size_t i = 0; i < n_top; i++) {
        Dl_info info = {0};
        dladdr((void *)top[i].pc, &info);
        fprintf(f, "site %s usable %zu bytes %zu count %zu %s+%#lx %s\n", cls_name[top[i].cls],
                top[i].usable, top[i].bytes, top[i].count, info.dli_sname ? info.dli_sname : "?",
                (unsigned long)(top[i].pc - (uintptr_t)(info.dli_saddr ? info.dli_saddr
                                                                          : info.dli_fbase)),
                base_name(info.dli_fname));
    }
    fclose(f);
    rename(tmp, path);
}

static void *reporter(void *arg)
{
    const char *path = arg;
    char peak_path[4096];
    snprintf(peak_path, sizeof(peak_path), "%s.peak", path);
    size_t n = (size_t)1 << SITE_BITS;
    struct site *copy = mmap(NULL, n * sizeof(*copy), PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        return NULL;
    inside = 1; /* the reporter's own allocations (stdio) are not counted */
    for (;;) {
        size_t bytes[N_CLS], usable[N_CLS], total = 0;
        pthread_mutex_lock(&mu);
        memcpy(copy, sites, n * sizeof(*copy));
        memcpy(bytes, cls_bytes, sizeof(bytes));
        memcpy(usable, cls_usable, sizeof(usable));
        pthread_mutex_unlock(&mu);
        qsort(copy, n, sizeof(*copy), by_usable);
        for (int c = 0; c < N_CLS; c++)
            total += usable[c];
        report(path, copy, TOP_SITES, bytes, usable);
        if (total > peak_total) {
            peak_total = total;
            report(peak_path, copy, TOP_SITES, bytes, usable);
        }
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

__attribute__((constructor)) static void census_start(void)
{
    const char *path = getenv("AERO_ALLOC_CENSUS");
    inside = 1;
    lives = mmap(NULL, ((size_t)1 << LIVE_BITS) * sizeof(*lives), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    sites = mmap(NULL, ((size_t)1 << SITE_BITS) * sizeof(*sites), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!path || lives == MAP_FAILED || sites == MAP_FAILED) {
        inside = 0;
        return;
    }
    void *warm[2];
    backtrace(warm, 2); /* loads the unwinder now, not inside a malloc */
    dl_iterate_phdr(add_skip_ranges, NULL);
    /* The reporter takes no signal: the relay waits for its signals in
     * one thread with every other thread blocking them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, reporter, (void *)path) == 0)
        ready = 1;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    inside = 0;
}
