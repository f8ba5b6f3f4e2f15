/*
 * normalize.c - SPEC.md section 13.1-13.4: the eight normalizers as data.
 * Each message is one table of rows (output field, type, source key, how
 * the key parses, conversion, validity); normalize_frame parses each
 * source key the frame has once, walks the table, then writes the line in
 * key order. The key order and each row's source slot are worked out once
 * in normalize_create. Pure, no globals: callers may share a ctx.
 */
#include "normalize.h"

#include "frame_ext.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ the tables */

/* How a source key's value parses (SPEC 13.2, 13.9 rule 3). */
enum kind { K_INT, K_UINT, K_FLOAT, K_ENUM, K_U16S };

/* How a row's value is made from its source(s). */
enum conv {
    C_AS_IS,   /* the parsed value, in the row's type */
    C_DIV,     /* ÷ div, a float */
    C_HYPOT,   /* Go's hypot(key, key2) ÷ div, only when both are present */
    C_VOLTAGE, /* key: Voltages, key2: VoltagesExt (SPEC 13.3 battery_voltage_v) */
};

/* When a parsed value is kept. */
enum check {
    CK_ANY,
    CK_NE,         /* value != a */
    CK_RANGE,      /* a <= value <= b, else the field is left out */
    CK_RANGE_FAIL, /* a <= value <= b, else normalization fails with `fail` */
};

enum {
    REQUIRED = 1,    /* missing or unparseable: normalization fails */
    DEVTIME_MS = 2,  /* also sets device time (milliseconds, system_boot) */
    DEVTIME_US = 4,  /* also sets device time (microseconds, unknown) */
};

struct nz_row {
    const char *field; /* output field */
    char type;         /* 'F' float, 'U' unsigned, 'I' signed, 'S' string */
    const char *key;   /* source key (gomavlib field name) */
    enum kind kind;
    enum conv conv;
    double div;        /* C_DIV, C_HYPOT, C_VOLTAGE */
    enum check check;
    int64_t a, b;
    const char *fail;  /* CK_RANGE_FAIL's detail */
    unsigned flags;
    const char *key2;  /* C_HYPOT, C_VOLTAGE */
};

#define F_DIV(f, k, kd, d, ck, a, b) {f, 'F', k, kd, C_DIV, d, ck, a, b, NULL, 0, NULL}
#define ENUM(f, k) {f, 'S', k, K_ENUM, C_AS_IS, 0, CK_ANY, 0, 0, NULL, 0, NULL}

static const char LATLON_FAIL[] = "latitude or longitude outside valid range";

static const struct nz_row global_position_int[] = {
    {"latitude_deg", 'F', "Lat", K_INT, C_DIV, 1e7, CK_RANGE_FAIL, -900000000, 900000000, LATLON_FAIL, REQUIRED, NULL},
    {"longitude_deg", 'F', "Lon", K_INT, C_DIV, 1e7, CK_RANGE_FAIL, -1800000000, 1800000000, LATLON_FAIL, REQUIRED, NULL},
    F_DIV("altitude_msl_m", "Alt", K_INT, 1000, CK_ANY, 0, 0),
    F_DIV("relative_altitude_m", "RelativeAlt", K_INT, 1000, CK_ANY, 0, 0),
    F_DIV("velocity_north_mps", "Vx", K_INT, 100, CK_ANY, 0, 0),
    F_DIV("velocity_east_mps", "Vy", K_INT, 100, CK_ANY, 0, 0),
    F_DIV("velocity_down_mps", "Vz", K_INT, 100, CK_ANY, 0, 0),
    {"groundspeed_mps", 'F', "Vx", K_INT, C_HYPOT, 100, CK_ANY, 0, 0, NULL, 0, "Vy"},
    F_DIV("heading_deg", "Hdg", K_UINT, 100, CK_RANGE, 0, 35999),
    {"device_boot_time_ms", 'U', "TimeBootMs", K_UINT, C_AS_IS, 0, CK_ANY, 0, 0, NULL, DEVTIME_MS, NULL},
};

static const struct nz_row battery_status[] = {
    {"battery_id", 'U', "Id", K_UINT, C_AS_IS, 0, CK_RANGE_FAIL, 0, 255, "battery ID is invalid", REQUIRED, NULL},
    ENUM("battery_function", "BatteryFunction"),
    ENUM("battery_type", "Type"),
    ENUM("battery_charge_state", "ChargeState"),
    ENUM("battery_mode", "Mode"),
    F_DIV("battery_temperature_c", "Temperature", K_INT, 100, CK_NE, 32767, 0),
    {"battery_voltage_v", 'F', "Voltages", K_U16S, C_VOLTAGE, 1000, CK_ANY, 0, 0, NULL, 0, "VoltagesExt"},
    F_DIV("battery_current_a", "CurrentBattery", K_INT, 100, CK_NE, -1, 0),
    {"battery_consumed_mah", 'I', "CurrentConsumed", K_INT, C_AS_IS, 0, CK_NE, -1, 0, NULL, 0, NULL},
    F_DIV("battery_consumed_wh", "EnergyConsumed", K_INT, 36, CK_NE, -1, 0),
    {"battery_remaining_pct", 'F', "BatteryRemaining", K_INT, C_AS_IS, 0, CK_RANGE, 0, 100, NULL, 0, NULL},
    {"battery_time_remaining_s", 'I', "TimeRemaining", K_INT, C_AS_IS, 0, CK_RANGE, 1, INT64_MAX, NULL, 0, NULL},
};

static const struct nz_row heartbeat[] = {
    ENUM("vehicle_type", "Type"),
    ENUM("autopilot_type", "Autopilot"),
    ENUM("base_mode", "BaseMode"),
    ENUM("system_status", "SystemStatus"),
    {"custom_mode", 'U', "CustomMode", K_UINT, C_AS_IS, 0, CK_ANY, 0, 0, NULL, 0, NULL},
    {"mavlink_version", 'U', "MavlinkVersion", K_UINT, C_AS_IS, 0, CK_ANY, 0, 0, NULL, 0, NULL},
};

#define U_AS_IS(f, k) {f, 'U', k, K_UINT, C_AS_IS, 0, CK_ANY, 0, 0, NULL, 0, NULL}

static const struct nz_row sys_status[] = {
    F_DIV("mainloop_load_pct", "Load", K_UINT, 10, CK_RANGE, 0, 1000),
    F_DIV("communication_drop_rate_pct", "DropRateComm", K_UINT, 100, CK_ANY, 0, 0),
    U_AS_IS("communication_error_count", "ErrorsComm"),
    U_AS_IS("autopilot_error_count_1", "ErrorsCount1"),
    U_AS_IS("autopilot_error_count_2", "ErrorsCount2"),
    U_AS_IS("autopilot_error_count_3", "ErrorsCount3"),
    U_AS_IS("autopilot_error_count_4", "ErrorsCount4"),
    ENUM("sensors_present", "OnboardControlSensorsPresent"),
    ENUM("sensors_enabled", "OnboardControlSensorsEnabled"),
    ENUM("sensors_health", "OnboardControlSensorsHealth"),
    ENUM("sensors_present_extended", "OnboardControlSensorsPresentExtended"),
    ENUM("sensors_enabled_extended", "OnboardControlSensorsEnabledExtended"),
    ENUM("sensors_health_extended", "OnboardControlSensorsHealthExtended"),
};

#define F_AS_IS(f, k) {f, 'F', k, K_FLOAT, C_AS_IS, 0, CK_ANY, 0, 0, NULL, 0, NULL}

static const struct nz_row vfr_hud[] = {
    F_AS_IS("airspeed_mps", "Airspeed"),
    F_AS_IS("groundspeed_mps", "Groundspeed"),
    F_AS_IS("climb_rate_mps", "Climb"),
    F_AS_IS("altitude_msl_m", "Alt"),
    {"heading_deg", 'F', "Heading", K_INT, C_AS_IS, 0, CK_RANGE, 0, 360, NULL, 0, NULL},
    {"throttle_pct", 'F', "Throttle", K_UINT, C_AS_IS, 0, CK_RANGE, 0, 100, NULL, 0, NULL},
};

static const struct nz_row extended_sys_state[] = {
    ENUM("vtol_state", "VtolState"),
    ENUM("landed_state", "LandedState"),
};

static const struct nz_row gps_raw_int[] = {
    {"device_time_usec", 'U', "TimeUsec", K_UINT, C_AS_IS, 0, CK_ANY, 0, 0, NULL, DEVTIME_US, NULL},
    ENUM("gps_fix_type", "FixType"),
    F_DIV("gps_latitude_deg", "Lat", K_INT, 1e7, CK_RANGE, -900000000, 900000000),
    F_DIV("gps_longitude_deg", "Lon", K_INT, 1e7, CK_RANGE, -1800000000, 1800000000),
    F_DIV("gps_altitude_msl_m", "Alt", K_INT, 1000, CK_ANY, 0, 0),
    F_DIV("gps_altitude_ellipsoid_m", "AltEllipsoid", K_INT, 1000, CK_ANY, 0, 0),
    F_DIV("gps_hdop", "Eph", K_UINT, 100, CK_NE, 65535, 0),
    F_DIV("gps_vdop", "Epv", K_UINT, 100, CK_NE, 65535, 0),
    F_DIV("gps_groundspeed_mps", "Vel", K_UINT, 100, CK_NE, 65535, 0),
    F_DIV("gps_course_over_ground_deg", "Cog", K_UINT, 100, CK_NE, 65535, 0),
    {"gps_satellites_visible", 'U', "SatellitesVisible", K_UINT, C_AS_IS, 0, CK_NE, 255, 0, NULL, 0, NULL},
    F_DIV("gps_horizontal_accuracy_m", "HAcc", K_UINT, 1000, CK_NE, 4294967295, 0),
    F_DIV("gps_vertical_accuracy_m", "VAcc", K_UINT, 1000, CK_NE, 4294967295, 0),
    F_DIV("gps_speed_accuracy_mps", "VelAcc", K_UINT, 1000, CK_NE, 4294967295, 0),
    F_DIV("gps_heading_accuracy_deg", "HdgAcc", K_UINT, 1e5, CK_NE, 4294967295, 0),
    F_DIV("gps_yaw_deg", "Yaw", K_UINT, 100, CK_RANGE, 1, 36000),
};

static const struct nz_row system_time[] = {
    {"device_unix_time_usec", 'U', "TimeUnixUsec", K_UINT, C_AS_IS, 0, CK_NE, 0, 0, NULL, 0, NULL},
    U_AS_IS("device_boot_time_ms", "TimeBootMs"),
};

struct nz_message {
    const char *name; /* canonical */
    const struct nz_row *rows;
    size_t n_rows;
};

#define MSG(m) {#m, m, sizeof(m) / sizeof(m[0])}
static const struct nz_message messages[NORMALIZE_N_MESSAGES] = {
    MSG(global_position_int), MSG(battery_status), MSG(heartbeat), MSG(sys_status),
    MSG(vfr_hud), MSG(extended_sys_state), MSG(gps_raw_int), MSG(system_time),
};

/* The common fields of SPEC 13.4 rule 2 (mavlink_system_id and
 * mavlink_component_id are never written: no normalizer sets them). */
enum common {
    CM_AGENT_CAPTURE_TIME_NS, CM_AIRCRAFT_ID, CM_DEVICE_TIME_BASIS, CM_DEVICE_TIME_UNIT,
    CM_DEVICE_TIME_VALUE, CM_DIALECT, CM_FLIGHT_ID, CM_INTENT_ID, CM_INTENT_VERSION,
    CM_MESSAGE_ID, CM_OPERATOR_ID, CM_RELAY_ID, CM_RELAY_TIME_NS, CM_SESSION_ID,
    CM_TIMESTAMP_SOURCE, CM_WAL_ID, CM_WAL_SEQUENCE, N_COMMON
};

static const char *const common_names[N_COMMON] = {
    "agent_capture_time_ns", "aircraft_id", "device_time_basis", "device_time_unit",
    "device_time_value", "dialect", "flight_id", "intent_id", "intent_version",
    "message_id", "operator_id", "relay_id", "relay_time_ns", "session_id",
    "timestamp_source", "wal_id", "wal_sequence",
};

enum { MAX_ROWS = 20, MAX_SRC = 20, MAX_SLOTS = N_COMMON + MAX_ROWS };

/* Worked out once per message: distinct source keys, each row's slots, and
 * the order of every field the line may hold (common ones and rows) by
 * name. */
struct msg_plan {
    size_t n_src;
    const char *src_key[MAX_SRC];
    size_t src_len[MAX_SRC];
    enum kind src_kind[MAX_SRC];
    unsigned char row_src[MAX_ROWS], row_src2[MAX_ROWS];
    unsigned char order[MAX_SLOTS]; /* slot < N_COMMON: common; else row slot - N_COMMON */
    size_t n_slots;
};

struct normalize_ctx {
    char *relay_id;
    size_t relay_id_len;
    struct msg_plan plan[NORMALIZE_N_MESSAGES];
};

/* ------------------------------------------------------------ the names */

static int is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int to_lower(int c) { return is_upper(c) ? c - 'A' + 'a' : c; }

size_t normalize_canonical_name(const char *name, size_t len, char *out, size_t cap)
{
    const char *s = name, *e = name + len;
    while (s < e && is_space((unsigned char)*s))
        s++;
    while (e > s && is_space((unsigned char)e[-1]))
        e--;
    while (s < e && *s == '*')
        s++;
    for (const char *p = e; p > s; p--)
        if (p[-1] == '.') {
            s = p;
            break;
        }
    if (e - s >= 7 && strncasecmp(s, "message", 7) == 0)
        s += 7;
    size_t n = 0;
    int pending = 0; /* an '_' waits: written before the next other character */
    for (const char *p = s; p < e && cap > 0; p++) {
        int c = (unsigned char)*p;
        if (c == '-' || c == ' ' || c == '_') {
            pending = n > 0;
            continue;
        }
        if (is_upper(c) && p > s &&
            (is_lower((unsigned char)p[-1]) || is_digit((unsigned char)p[-1]) ||
             (p + 1 < e && is_lower((unsigned char)p[1]))))
            pending = n > 0;
        if (pending && n + 1 < cap)
            out[n++] = '_';
        pending = 0;
        if (n + 1 < cap)
            out[n++] = (char)to_lower(c);
    }
    if (cap > 0)
        out[n] = '\0';
    if (n == 13 && memcmp(out, "system_status", 13) == 0)
        n = (size_t)snprintf(out, cap, "sys_status");
    else if (n == 10 && memcmp(out, "gpsraw_int", 10) == 0)
        n = (size_t)snprintf(out, cap, "gps_raw_int");
    return n < cap ? n : cap ? cap - 1 : 0;
}

const char *normalize_message_name(enum normalize_message m)
{
    return m < NORMALIZE_N_MESSAGES ? messages[m].name : "";
}

enum normalize_message normalize_lookup(const char *name, size_t len)
{
    char canon[64];
    size_t n = normalize_canonical_name(name, len, canon, sizeof(canon));
    for (int m = 0; m < NORMALIZE_N_MESSAGES; m++)
        if (strlen(messages[m].name) == n && memcmp(messages[m].name, canon, n) == 0)
            return (enum normalize_message)m;
    return NORMALIZE_N_MESSAGES;
}

/* ------------------------------------------------------------ the plans */

static const char *slot_name(const struct nz_message *m, unsigned slot)
{
    return slot < N_COMMON ? common_names[slot] : m->rows[slot - N_COMMON].field;
}

static unsigned char plan_source(struct msg_plan *p, const char *key, enum kind kind)
{
    for (size_t i = 0; i < p->n_src; i++)
        if (strcmp(p->src_key[i], key) == 0)
            return (unsigned char)i;
    p->src_key[p->n_src] = key;
    p->src_len[p->n_src] = strlen(key);
    p->src_kind[p->n_src] = kind;
    return (unsigned char)p->n_src++;
}

static void plan_build(const struct nz_message *m, struct msg_plan *p)
{
    memset(p, 0, sizeof(*p));
    for (size_t r = 0; r < m->n_rows; r++) {
        const struct nz_row *row = &m->rows[r];
        p->row_src[r] = plan_source(p, row->key, row->kind);
        p->row_src2[r] = row->key2 ? plan_source(p, row->key2, row->kind) : 0;
    }
    p->n_slots = N_COMMON + m->n_rows;
    for (size_t i = 0; i < p->n_slots; i++)
        p->order[i] = (unsigned char)i;
    /* Insertion sort by name: a few dozen entries, once. */
    for (size_t i = 1; i < p->n_slots; i++)
        for (size_t j = i; j > 0 && strcmp(slot_name(m, p->order[j - 1]),
                                           slot_name(m, p->order[j])) > 0; j--) {
            unsigned char t = p->order[j];
            p->order[j] = p->order[j - 1];
            p->order[j - 1] = t;
        }
}

int normalize_create(const char *relay_id, struct normalize_ctx **out)
{
    struct normalize_ctx *c = calloc(1, sizeof(*c));
    *out = c;
    if (!c || !(c->relay_id = strdup(relay_id ? relay_id : "")))
        return -ENOMEM;
    c->relay_id_len = strlen(c->relay_id);
    for (int m = 0; m < NORMALIZE_N_MESSAGES; m++)
        plan_build(&messages[m], &c->plan[m]);
    return 0;
}

void normalize_destroy(struct normalize_ctx *c)
{
    if (!c)
        return;
    free(c->relay_id);
    free(c);
}

/* ------------------------------------------------------- parsing values */

/* A parsed source value. */
struct src_val {
    enum { SV_ABSENT, SV_BAD, SV_OK } state;
    aero_str text; /* trimmed */
    union {
        int64_t i;
        uint64_t u;
        double f;
    };
    char err[96]; /* SV_BAD: Go's strconv text, for required keys */
};

static aero_str trim(aero_str s)
{
    while (s.len > 0 && is_space((unsigned char)s.ptr[0]))
        s.ptr++, s.len--;
    while (s.len > 0 && is_space((unsigned char)s.ptr[s.len - 1]))
        s.len--;
    return s;
}

/* Go's strconv error text: strconv.<fn>: parsing "<v>": <why>, the value
 * quoted as Go does (printable ASCII kept, the rest \xNN). */
static void strconv_error(struct src_val *v, const char *fn, const char *why)
{
    char q[48];
    size_t n = 0;
    for (size_t i = 0; i < v->text.len && n + 5 < sizeof(q); i++) {
        unsigned char c = (unsigned char)v->text.ptr[i];
        if (c == '"' || c == '\\')
            n += (size_t)snprintf(q + n, sizeof(q) - n, "\\%c", c);
        else if (c >= 0x20 && c < 0x7F)
            q[n++] = (char)c;
        else
            n += (size_t)snprintf(q + n, sizeof(q) - n, "\\x%02x", c);
    }
    q[n] = '\0';
    snprintf(v->err, sizeof(v->err), "strconv.%s: parsing \"%s\": %s", fn, q, why);
    v->state = SV_BAD;
}

/* Base-10 digits of s into *u; 0, -EINVAL (syntax) or -ERANGE. */
static int parse_digits(const char *s, size_t n, uint64_t *u)
{
    uint64_t x = 0;
    if (n == 0)
        return -EINVAL;
    int range = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            range = 1;
        else
            x = x * 10 + d;
    }
    *u = range ? UINT64_MAX : x;
    return range ? -ERANGE : 0;
}

static void parse_int(struct src_val *v)
{
    const char *s = v->text.ptr;
    size_t n = v->text.len;
    int neg = n > 0 && s[0] == '-';
    if (n > 0 && (s[0] == '-' || s[0] == '+'))
        s++, n--;
    uint64_t u;
    int rc = parse_digits(s, n, &u);
    if (rc == 0 && u > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        rc = -ERANGE;
    if (rc != 0)
        { strconv_error(v, "ParseInt", rc == -ERANGE ? "value out of range" : "invalid syntax"); return; }
    v->i = neg ? (int64_t)(0 - u) : (int64_t)u;
    v->state = SV_OK;
}

static void parse_uint(struct src_val *v)
{
    int rc = parse_digits(v->text.ptr, v->text.len, &v->u);
    if (rc != 0)
        { strconv_error(v, "ParseUint", rc == -ERANGE ? "value out of range" : "invalid syntax"); return; }
    v->state = SV_OK;
}

static bool is_hex_letter(int c) { return to_lower(c) >= 'a' && to_lower(c) <= 'f'; }

/* Go's strconv underscoreOK: an '_' only between digits, or between a base
 * prefix and a digit. */
static bool underscores_ok(const char *s, size_t n)
{
    char saw = '^';
    size_t i = 0;
    bool hex = false;
    if (n >= 1 && (s[0] == '+' || s[0] == '-'))
        s++, n--;
    int base = n >= 2 && s[0] == '0' ? to_lower((unsigned char)s[1]) : 0;
    if (base == 'b' || base == 'o' || base == 'x') {
        i = 2;
        saw = '0';
        hex = base == 'x';
    }
    for (; i < n; i++) {
        if (is_digit((unsigned char)s[i]) || (hex && is_hex_letter((unsigned char)s[i]))) {
            saw = '0';
        } else if (s[i] == '_') {
            if (saw != '0')
                return false;
            saw = '_';
        } else {
            if (saw == '_')
                return false;
            saw = '!';
        }
    }
    return saw != '_';
}

/* The syntax Go's ParseFloat reads (strconv readFloat), without the
 * "inf" / "infinity" / "nan" words that SPEC 13.2 refuses: optional sign;
 * decimal digits with at most one '.' and an optional e exponent, or "0x"
 * hex digits with at most one '.' and a required p exponent; '_' between
 * digits. strtod alone would also take "0x10", "infinity" and "nan(...)". */
static bool go_float_syntax(const char *s, size_t n)
{
    size_t i = 0;
    bool hex = false, dot = false, digits = false, underscores = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i + 2 < n && s[i] == '0' && to_lower(s[i + 1]) == 'x') {
        hex = true;
        i += 2;
    }
    for (; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '_')
            underscores = true;
        else if (c == '.' && !dot)
            dot = true;
        else if (is_digit(c) || (hex && is_hex_letter(c)))
            digits = true;
        else
            break;
    }
    if (!digits)
        return false;
    if (i < n && to_lower(s[i]) == (hex ? 'p' : 'e')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit((unsigned char)s[i]))
            return false;
        for (; i < n && (is_digit((unsigned char)s[i]) || s[i] == '_'); i++)
            underscores |= s[i] == '_';
    } else if (hex) {
        return false; /* a hex mantissa needs its p exponent */
    }
    return i == n && (!underscores || underscores_ok(s, n));
}

static void parse_float(struct src_val *v)
{
    const char *s = v->text.ptr;
    size_t n = v->text.len;
    if (n == 0 || !go_float_syntax(s, n))
        { strconv_error(v, "ParseFloat", "invalid syntax"); return; }
    /* strtod wants a C string without the '_' separators; values are at
     * most 4096 bytes (SPEC section 2), most of them a few. */
    char small[64], *tmp = n < sizeof(small) ? small : malloc(n + 1);
    if (!tmp)
        { strconv_error(v, "ParseFloat", "invalid syntax"); return; }
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '_')
            tmp[o++] = s[i];
    tmp[o] = '\0';
    double d = strtod(tmp, NULL);
    if (tmp != small)
        free(tmp);
    /* Go: out of range (past the largest double) is ±Inf with ErrRange;
     * an underflow is 0 without an error. */
    if (!isfinite(d))
        { strconv_error(v, "ParseFloat", "value out of range"); return; }
    v->f = d;
    v->state = SV_OK;
}

/* "[a, b, …]": bracketed, else SV_BAD. The elements are read by the row
 * (u16s_each): which of them count depends on the array. */
static void parse_u16s(struct src_val *v)
{
    aero_str s = v->text;
    v->state = s.len >= 2 && s.ptr[0] == '[' && s.ptr[s.len - 1] == ']' ? SV_OK : SV_BAD;
}

/* Calls f(element value, arg) for each element of a well-formed array; 0,
 * or -EINVAL at the first bad element. */
static int u16s_each(aero_str s, void (*f)(uint64_t, void *), void *arg)
{
    const char *p = s.ptr + 1, *e = s.ptr + s.len - 1;
    aero_str inner = trim((aero_str){p, (size_t)(e - p)});
    if (inner.len == 0)
        return 0; /* [] */
    p = inner.ptr;
    e = inner.ptr + inner.len;
    while (p <= e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        if (!c)
            c = e;
        aero_str el = trim((aero_str){p, (size_t)(c - p)});
        uint64_t u;
        if (parse_digits(el.ptr, el.len, &u) != 0 || u > 65535)
            return -EINVAL;
        f(u, arg);
        p = c + 1;
    }
    return 0;
}

static void parse_value(struct src_val *v, enum kind kind)
{
    switch (kind) {
    case K_INT: parse_int(v); break;
    case K_UINT: parse_uint(v); break;
    case K_FLOAT: parse_float(v); break;
    case K_ENUM: v->state = SV_OK; break;
    case K_U16S: parse_u16s(v); break;
    }
}

/* --------------------------------------------------------- field values */

/* One output value of the line. */
struct out_val {
    char type; /* 0: absent; 'F', 'U', 'I', 'S' */
    int lower; /* 'S': lower-cased on output (enums) */
    int dec;   /* 'F': exactly mant × 10^exp10 (|mant| < 1e15): printed from that */
    int exp10;
    int64_t mant;
    union {
        double f;
        uint64_t u;
        int64_t i;
        aero_str s;
    };
};

static void set_str(struct out_val *o, aero_str s)
{
    o->type = 'S';
    o->lower = 0;
    o->s = s;
}

static void set_opt_str(struct out_val *o, aero_str s)
{
    if (s.len > 0)
        set_str(o, s);
}

/* A float that is the integer x divided by div: exact digits when div is a
 * power of ten and x has at most 15 of them. */
static void set_scaled(struct out_val *o, int64_t x, double div)
{
    o->type = 'F';
    o->f = (double)x / div;
    o->dec = 0;
    int k = 0;
    double p = 1;
    while (p < div && k < 8)
        p *= 10, k++;
    if (p == div && x > -1000000000000000 && x < 1000000000000000) {
        o->dec = 1;
        o->mant = x;
        o->exp10 = -k;
    }
}

/* Whether v (parsed by `kind`) passes the row's check. */
static int check_ok(const struct nz_row *r, const struct src_val *v)
{
    if (r->check == CK_ANY)
        return 1;
    if (r->kind == K_UINT) {
        uint64_t u = v->u;
        if (r->check == CK_NE)
            return u != (uint64_t)r->a;
        return u >= (uint64_t)r->a && u <= (uint64_t)r->b;
    }
    int64_t i = v->i;
    if (r->check == CK_NE)
        return i != r->a;
    return i >= r->a && i <= r->b;
}

struct volt_acc {
    uint64_t sum;
    uint64_t skip; /* the element value that does not count */
};

static void volt_add(uint64_t u, void *arg)
{
    struct volt_acc *a = arg;
    if (u != a->skip)
        a->sum += u;
}

/* Sum of arr's elements other than skip into *sum; 1 when the array is
 * there and well formed. */
static int volt_sum(const struct src_val *v, uint64_t skip, uint64_t *sum)
{
    struct volt_acc a = {0, skip};
    if (v->state != SV_OK || u16s_each(v->text, volt_add, &a) != 0)
        return 0;
    *sum += a.sum;
    return 1;
}

/* Go's math.Hypot (math/hypot.go; amd64's assembly does the same), not
 * glibc's hypot: glibc rounds correctly, Go does not, and the two differ in
 * the last digit for about 3 in 10 integer pairs, so a row would not read
 * as upstream's (SPEC 13.3 groundspeed_mps). Built with -ffp-contract=off
 * (CMakeLists.txt): q*q fused into an FMA would round differently again. */
static double go_hypot(double p, double q)
{
    p = fabs(p), q = fabs(q);
    if (isinf(p) || isinf(q))
        return INFINITY;
    if (isnan(p) || isnan(q))
        return NAN;
    if (p < q) {
        double t = p;
        p = q, q = t;
    }
    if (p == 0)
        return 0;
    q = q / p;
    return p * sqrt(1 + q * q);
}

/* The row's value from its parsed source(s) into *o (left absent when the
 * row's rules say so). 0, or -EINVAL with err set (normalization fails). */
static int row_value(const struct nz_row *r, const struct src_val *v, const struct src_val *v2,
                     struct out_val *o, char *err, size_t errlen)
{
    if (r->conv == C_VOLTAGE) {
        uint64_t sum = 0;
        int any = volt_sum(v, 65535, &sum);
        any |= volt_sum(v2, 0, &sum);
        if (any && sum > 0)
            set_scaled(o, (int64_t)sum, r->div);
        return 0;
    }
    if (v->state != SV_OK) {
        if (!(r->flags & REQUIRED))
            return 0;
        if (v->state == SV_ABSENT)
            snprintf(err, errlen, "required field %s is missing", r->key);
        else
            snprintf(err, errlen, "parse required field %s: %s", r->key, v->err);
        return -EINVAL;
    }
    if (!check_ok(r, v)) {
        if (r->check != CK_RANGE_FAIL)
            return 0;
        snprintf(err, errlen, "%s", r->fail);
        return -EINVAL;
    }
    switch (r->conv) {
    case C_HYPOT:
        if (v2->state == SV_OK)
            o->type = 'F', o->dec = 0, o->f = go_hypot((double)v->i, (double)v2->i) / r->div;
        return 0;
    case C_DIV:
        if (r->kind == K_UINT && v->u > INT64_MAX)
            o->type = 'F', o->dec = 0, o->f = (double)v->u / r->div;
        else
            set_scaled(o, r->kind == K_UINT ? (int64_t)v->u : v->i, r->div);
        return 0;
    default:
        break;
    }
    switch (r->type) {
    case 'S':
        set_str(o, v->text);
        o->lower = 1;
        return 0;
    case 'U':
        o->type = 'U', o->u = v->u;
        return 0;
    case 'I':
        o->type = 'I', o->i = v->i;
        return 0;
    default: /* 'F' from a number as it is */
        if (r->kind == K_FLOAT)
            o->type = 'F', o->dec = 0, o->f = v->f;
        else if (r->kind == K_UINT && v->u > INT64_MAX)
            o->type = 'F', o->dec = 0, o->f = (double)v->u;
        else
            set_scaled(o, r->kind == K_UINT ? (int64_t)v->u : v->i, 1);
        return 0;
    }
}

/* ------------------------------------------------------------ the floats */

/* Go's 'g' with the shortest digits: dig[0..nd) with no leading or trailing
 * zeros, value 0.dig × 10^dp. */
static size_t format_digits(char *out, int neg, const char *dig, int nd, int dp)
{
    size_t n = 0;
    if (neg)
        out[n++] = '-';
    int exp = dp - 1;
    if (exp < -4 || exp >= 6) {
        out[n++] = dig[0];
        if (nd > 1) {
            out[n++] = '.';
            memcpy(out + n, dig + 1, (size_t)nd - 1);
            n += (size_t)nd - 1;
        }
        n += (size_t)sprintf(out + n, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return n;
    }
    if (dp <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -dp; i++)
            out[n++] = '0';
        memcpy(out + n, dig, (size_t)nd);
        return n + (size_t)nd;
    }
    for (int i = 0; i < dp; i++)
        out[n++] = i < nd ? dig[i] : '0';
    if (nd > dp) {
        out[n++] = '.';
        memcpy(out + n, dig + dp, (size_t)(nd - dp));
        n += (size_t)(nd - dp);
    }
    return n;
}

size_t normalize_format_float(double v, char *out)
{
    if (v == 0)
        return (size_t)sprintf(out, signbit(v) ? "-0" : "0");
    char buf[40], dig[20];
    /* 15 significant digits always read back when they can (DBL_DIG), and
     * then they are the shortest with trailing zeros gone; else 16, 17.
     * Subnormals hold fewer digits: count up from 1. */
    for (int prec = fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
        if (prec < 17 && strtod(buf, NULL) != v)
            continue;
        const char *p = buf + (buf[0] == '-');
        int nd = 0;
        for (; *p && *p != 'e'; p++)
            if (is_digit((unsigned char)*p))
                dig[nd++] = *p;
        int exp = atoi(p + 1);
        while (nd > 1 && dig[nd - 1] == '0')
            nd--;
        return format_digits(out, v < 0, dig, nd, exp + 1);
    }
    return 0; /* not reached */
}

/* mant × 10^exp10, |mant| < 1e15, as Go prints the double nearest to it. */
static size_t format_decimal(int64_t mant, int exp10, char *out)
{
    if (mant == 0)
        return (size_t)sprintf(out, "0");
    char dig[24];
    uint64_t u = mant < 0 ? (uint64_t)0 - (uint64_t)mant : (uint64_t)mant;
    int nd = sprintf(dig, "%" PRIu64, u);
    while (nd > 1 && dig[nd - 1] == '0')
        nd--, exp10++;
    return format_digits(out, mant < 0, dig, nd, nd + exp10);
}

/* ------------------------------------------------------------ the frame */

/* SPEC 13.1 rule 6 on what the core hands over (it has canonicalized
 * wal_id already, so the UUID checks guard other callers). */
static int uuid_ok(aero_str s)
{
    if (s.len != 36)
        return 0;
    int nonzero = 0;
    for (size_t i = 0; i < 36; i++) {
        char c = s.ptr[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!(is_digit((unsigned char)c) || (c >= 'a' && c <= 'f'))) {
            return 0;
        } else {
            nonzero |= c != '0';
        }
    }
    return nonzero;
}

static const char *base_check(const aero_frame *f, const struct frame_ext *x, aero_str relay_id)
{
    if (!AERO_HAS(f, aero_frame, received_unix_ns) || f->received_unix_ns == 0)
        return "relay time is required";
    if (f->sent_at_unix_ns <= 0)
        return "agent capture time is required";
    if (trim(f->agent_id).len == 0)
        return "agent ID is required";
    if (trim(x->wal_id).len == 0)
        return "WAL generation ID is required";
    if (!uuid_ok(x->wal_id))
        return "WAL generation ID is invalid: invalid UUID format";
    if (relay_id.len == 0)
        return "relay ID is required";
    if (f->session_id.len == 0)
        return "session ID is required";
    return NULL;
}

static int put_u64(struct lp_buf *b, uint64_t u, char suffix)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64 "%c", u, suffix);
    return lp_put(b, tmp, (size_t)n - (suffix == 0));
}

static int put_i64(struct lp_buf *b, int64_t i, char suffix)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64 "%c", i, suffix);
    return lp_put(b, tmp, (size_t)n - (suffix == 0));
}

static int put_value(struct lp_buf *b, const struct out_val *o)
{
    char tmp[40];
    switch (o->type) {
    case 'U': return put_u64(b, o->u, 'u');
    case 'I': return put_i64(b, o->i, 'i');
    case 'F':
        return lp_put(b, tmp, o->dec ? format_decimal(o->mant, o->exp10, tmp)
                                     : normalize_format_float(o->f, tmp));
    default:
        break;
    }
    size_t from = b->len + 1;
    if (lp_put(b, "\"", 1) != 0 || lp_put_escaped(b, o->s.ptr, o->s.len, LP_STRING_V3) != 0)
        return -ENOMEM;
    /* Enums: lower-cased as Go's ToLower does for the ASCII agents send.
     * Escaping adds no capital letter, so lower-casing its output is the
     * same as escaping the lower-cased value. */
    for (size_t i = from; o->lower && i < b->len; i++)
        b->p[i] = (char)to_lower((unsigned char)b->p[i]);
    return lp_put(b, "\"", 1);
}

/* The four tags, sorted: agent_id, frame_id, message_name, schema_version. */
static int put_head(struct lp_buf *b, const aero_frame *f, const char *msg)
{
    if (lp_puts(b, "aircraft_telemetry,agent_id=") != 0 ||
        lp_put_escaped(b, f->agent_id.ptr, f->agent_id.len, LP_TAG) != 0 ||
        lp_puts(b, ",frame_id=") != 0 || put_u64(b, f->agent_id.len, ':') != 0 ||
        lp_put_escaped(b, f->agent_id.ptr, f->agent_id.len, LP_TAG) != 0 ||
        lp_puts(b, ":") != 0 || put_i64(b, f->sent_at_unix_ns, ':') != 0 ||
        put_u64(b, f->seq, 0) != 0 || lp_puts(b, ",message_name=") != 0 ||
        lp_puts(b, msg) != 0 || lp_puts(b, ",schema_version=1 ") != 0)
        return -ENOMEM;
    return 0;
}

/* Dialect: trimmed, lower-cased (ASCII), `common` when empty. */
static aero_str dialect_of(const aero_frame *f, char *buf, size_t cap)
{
    aero_str d = trim(f->dialect);
    if (d.len == 0)
        return (aero_str){"common", 6};
    size_t n = d.len < cap ? d.len : cap;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)to_lower((unsigned char)d.ptr[i]);
    return (aero_str){buf, n};
}

static void common_values(const struct normalize_ctx *c, const aero_frame *f,
                          const struct frame_ext *x, struct out_val *cm, char *dialect_buf,
                          size_t dialect_cap)
{
    cm[CM_AGENT_CAPTURE_TIME_NS] = (struct out_val){.type = 'I', .i = f->sent_at_unix_ns};
    set_opt_str(&cm[CM_AIRCRAFT_ID], x->aircraft_id);
    set_str(&cm[CM_DIALECT], dialect_of(f, dialect_buf, dialect_cap));
    set_opt_str(&cm[CM_FLIGHT_ID], frame_ext_str_(f->flight_id));
    set_opt_str(&cm[CM_INTENT_ID], x->intent_id);
    if (x->intent_version != 0)
        cm[CM_INTENT_VERSION] = (struct out_val){.type = 'U', .u = x->intent_version};
    cm[CM_MESSAGE_ID] = (struct out_val){.type = 'U', .u = f->msg_id};
    set_opt_str(&cm[CM_OPERATOR_ID], x->operator_id);
    set_str(&cm[CM_RELAY_ID], (aero_str){c->relay_id, c->relay_id_len});
    cm[CM_RELAY_TIME_NS] = (struct out_val){.type = 'I', .i = f->received_unix_ns};
    set_str(&cm[CM_SESSION_ID], f->session_id);
    set_str(&cm[CM_TIMESTAMP_SOURCE], (aero_str){"agent_capture", 13});
    set_str(&cm[CM_WAL_ID], x->wal_id);
    cm[CM_WAL_SEQUENCE] = (struct out_val){.type = 'U', .u = f->seq};
}

enum normalize_outcome normalize_frame(const struct normalize_ctx *c, const aero_frame *f,
                                       struct lp_buf *b, enum normalize_message *msg,
                                       char *err, size_t errlen)
{
    enum normalize_message m = normalize_lookup(f->msg_name.ptr, f->msg_name.len);
    *msg = m;
    if (m == NORMALIZE_N_MESSAGES)
        return NZ_UNSUPPORTED;
    struct frame_ext x = frame_ext_of(f);
    if (x.protocol != AERO_PROTOCOL_MULTIPLEXED || x.wal_id.len == 0)
        return NZ_NO_WAL_ID;
    const char *why = base_check(f, &x, (aero_str){c->relay_id, c->relay_id_len});
    if (why) {
        snprintf(err, errlen, "%s", why);
        return NZ_FAILED;
    }

    const struct nz_message *def = &messages[m];
    const struct msg_plan *p = &c->plan[m];
    struct src_val src[MAX_SRC];
    for (size_t i = 0; i < p->n_src; i++)
        src[i].state = SV_ABSENT;
    /* Each frame field once: find its key among the message's sources. */
    for (size_t k = 0; k < f->n_fields; k++) {
        const aero_kv *kv = &f->fields[k];
        for (size_t i = 0; i < p->n_src; i++) {
            if (kv->key.len != p->src_len[i] || memcmp(kv->key.ptr, p->src_key[i], kv->key.len))
                continue;
            src[i].text = trim(kv->value);
            if (src[i].text.len > 0)
                parse_value(&src[i], p->src_kind[i]);
            break;
        }
    }

    struct out_val vals[MAX_SLOTS];
    memset(vals, 0, sizeof(vals));
    char dialect[64];
    common_values(c, f, &x, vals, dialect, sizeof(dialect));
    const char *fail = NULL;
    char fail_buf[160];
    for (size_t r = 0; r < def->n_rows; r++) {
        const struct nz_row *row = &def->rows[r];
        char e[160];
        struct out_val *o = &vals[N_COMMON + r];
        if (row_value(row, &src[p->row_src[r]], &src[p->row_src2[r]], o, e, sizeof(e)) != 0) {
            /* A missing or bad required key wins over a range failure met
             * before it (upstream parses the required keys first). */
            int required = src[p->row_src[r]].state != SV_OK;
            if (required || !fail) {
                snprintf(fail_buf, sizeof(fail_buf), "%s", e);
                fail = fail_buf;
            }
            if (required)
                break;
            continue;
        }
        if (o->type == 'F' && !o->dec && !isfinite(o->f)) {
            snprintf(fail_buf, sizeof(fail_buf), "field %s is not finite", row->field);
            fail = fail_buf;
            break;
        }
        if (o->type && (row->flags & (DEVTIME_MS | DEVTIME_US))) {
            int ms = row->flags & DEVTIME_MS;
            vals[CM_DEVICE_TIME_VALUE] = (struct out_val){.type = 'U', .u = o->u};
            set_str(&vals[CM_DEVICE_TIME_UNIT], ms ? (aero_str){"milliseconds", 12}
                                                   : (aero_str){"microseconds", 12});
            set_str(&vals[CM_DEVICE_TIME_BASIS], ms ? (aero_str){"system_boot", 11}
                                                    : (aero_str){"unknown", 7});
        }
    }
    if (fail) {
        snprintf(err, errlen, "%s", fail);
        return NZ_FAILED;
    }

    size_t start = b->len;
    if (put_head(b, f, def->name) != 0)
        goto nomem;
    int first = 1;
    for (size_t i = 0; i < p->n_slots; i++) {
        unsigned slot = p->order[i];
        const struct out_val *o = &vals[slot];
        if (!o->type)
            continue;
        if ((!first && lp_put(b, ",", 1) != 0) || lp_puts(b, slot_name(def, slot)) != 0 ||
            lp_put(b, "=", 1) != 0 || put_value(b, o) != 0)
            goto nomem;
        first = 0;
    }
    if (lp_put(b, " ", 1) != 0 || put_i64(b, f->sent_at_unix_ns, '\n') != 0)
        goto nomem;
    return NZ_ROW;
nomem:
    b->len = start;
    return NZ_NOMEM;
}
