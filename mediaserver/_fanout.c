/* Native per-receiver forwarding for the SFU hot path (optional; see mediaserver/producer.py).
 *
 * fanout(data, marker, seq_ext, timestamp, offset, keyframe, now, consumers) does, for every
 * Consumer in the steady state, what Consumer.forward does in Python: rewrite the 12-byte
 * RTP header, update its counters, then SRTP-protect (libsrtp's srtp_protect, through the
 * pointer pylibsrtp holds) and sendto() the receiver's nominated ICE pair. Any other
 * consumer (paused, thinning temporal layers, not yet re-based, no native send target...)
 * gets Consumer.forward. NACKs are answered from the publisher's shared history
 * (Producer.history, Consumer.retransmit), so nothing is stored per receiver here.
 *
 * Only Python.h and libc. Consumer derives from ConsumerState, whose numbers are C fields
 * updated in place (no Python object is made per copy); its two object attributes (native,
 * layers) are __slots__ whose offsets configure() reads once, so each is a load.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

#define BUF_SIZE 2048
/* What pylibsrtp accepts: its buffer is 1500 bytes, minus SRTP_MAX_TRAILER_LEN (144). */
#define MAX_PLAIN (1500 - 144)

/* ---------------------------------------------------------------- Target */

typedef struct {
    PyObject_HEAD
    int fd;                      /* owned (a dup); -1: invalid, consumers use Python */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char connected;              /* fd is connect()ed to addr: send() without an address */
    srtp_protect_fn protect;
    void *session;
    PyObject *keepalive;         /* the pylibsrtp Session owning `session` */
    unsigned long long sent;
    unsigned long long dropped;  /* EAGAIN / ENOBUFS: dropped like a full socket buffer */
    unsigned long long errors;   /* srtp_protect or other sendto failures */
    /* Transport-wide congestion control (mediaserver/bwe/send_history.py has the same
     * interface in Python): every packet gets the next number in a header extension, and
     * its send time and size are kept for the feedback. Kept across set()/clear(): the
     * numbering belongs to the peer's transport, not to one candidate pair. */
    int ext_id;                  /* the peer's id for the extension; 0: not negotiated */
    long long next_seq;          /* extended; packets carry its low 16 bits */
    PyObject *sent_us_buf;       /* bytearray of TWCC_SIZE int64 (microseconds) */
    PyObject *sizes_buf;         /* bytearray of TWCC_SIZE uint16 */
    int64_t *sent_us;
    uint16_t *sizes;
} Target;

#define TWCC_SIZE 8192
#define TWCC_MASK (TWCC_SIZE - 1)
#define TWCC_EXT_BYTES 8

static inline int64_t
monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock on Linux */
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The next number into the 8-byte extension at `ext`, the packet recorded as sent now. */
static inline void
twcc_stamp(Target *t, unsigned char *ext, Py_ssize_t rtp_len)
{
    long long seq = t->next_seq++;
    ext[0] = 0xBE;
    ext[1] = 0xDE;
    ext[2] = 0;
    ext[3] = 1;
    ext[4] = (unsigned char)(t->ext_id << 4 | 1);
    ext[5] = (unsigned char)(seq >> 8);
    ext[6] = (unsigned char)seq;
    ext[7] = 0;
    size_t i = (size_t)seq & TWCC_MASK;
    t->sent_us[i] = monotonic_us();
    t->sizes[i] = rtp_len > 0xFFFF ? 0xFFFF : (uint16_t)rtp_len;
}

/* fd is -1 from allocation on, not from __init__: Target.__new__(Target) alone must not
 * own (and close on dealloc) fd 0, which a zeroed struct would claim. */
static PyObject *
Target_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Target *self = (Target *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = -1;
    self->next_seq = 1;
    self->sent_us_buf = PyByteArray_FromStringAndSize(NULL, TWCC_SIZE * sizeof(int64_t));
    self->sizes_buf = PyByteArray_FromStringAndSize(NULL, TWCC_SIZE * sizeof(uint16_t));
    if (self->sent_us_buf == NULL || self->sizes_buf == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->sent_us = (int64_t *)PyByteArray_AS_STRING(self->sent_us_buf);
    self->sizes = (uint16_t *)PyByteArray_AS_STRING(self->sizes_buf);
    memset(self->sent_us, 0, TWCC_SIZE * sizeof(int64_t));
    memset(self->sizes, 0, TWCC_SIZE * sizeof(uint16_t));
    return (PyObject *)self;
}

static int
Target_init(Target *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Target() takes no arguments");
        return -1;
    }
    return 0;
}

static void
Target_dealloc(Target *self)
{
    if (self->fd >= 0)
        close(self->fd);
    Py_XDECREF(self->keepalive);
    Py_XDECREF(self->sent_us_buf);
    Py_XDECREF(self->sizes_buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Target_set(Target *self, PyObject *args)
{
    int fd, port;
    const char *host;
    unsigned long long protect, session;
    PyObject *keepalive;
    if (!PyArg_ParseTuple(args, "isiKKO", &fd, &host, &port, &protect, &session, &keepalive))
        return NULL;
    if (!protect || !session || fd < 0) {
        PyErr_SetString(PyExc_ValueError, "invalid native send target");
        return NULL;
    }
    memset(&self->addr, 0, sizeof(self->addr));
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&self->addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) goto bad;
        self->addrlen = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&self->addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) goto bad;
        self->addrlen = sizeof(*a);
    }
    Py_INCREF(keepalive);
    Py_XSETREF(self->keepalive, keepalive);
    self->protect = (srtp_protect_fn)(uintptr_t)protect;
    self->session = (void *)(uintptr_t)session;
    if (self->fd >= 0)
        close(self->fd);
    self->fd = fd;
    /* A connected UDP socket keeps its route: on this VM send() costs about 20% less
     * kernel time per copy than sendto() with an address (a route lookup every call).
     * The fd is a dup of the ICE pair's socket, so the socket itself is connected: the
     * kernel then only delivers datagrams from the nominated remote address, which is
     * the only one aioice talks to once ICE has completed (an ICE restart makes a new
     * connection). sendto() with an address still works for aioice and aiortc. */
    self->connected = connect(fd, (struct sockaddr *)&self->addr, self->addrlen) == 0;
    Py_RETURN_NONE;
bad:
    PyErr_Format(PyExc_ValueError, "bad address %s", host);
    return NULL;
}

static PyObject *
Target_clear(Target *self, PyObject *unused)
{
    if (self->fd >= 0)
        close(self->fd);
    self->fd = -1;
    self->connected = 0;
    self->protect = NULL;
    self->session = NULL;
    Py_CLEAR(self->keepalive);
    Py_RETURN_NONE;
}

static PyObject *
Target_get_valid(Target *self, void *closure)
{
    return PyBool_FromLong(self->fd >= 0);
}

/* memoryview(buffer).cast(fmt): typed views that keep the bytearray (not the Target) alive. */
static PyObject *
typed_view(PyObject *buffer, const char *fmt)
{
    PyObject *view = PyMemoryView_FromObject(buffer);
    if (view == NULL)
        return NULL;
    PyObject *typed = PyObject_CallMethod(view, "cast", "s", fmt);
    Py_DECREF(view);
    return typed;
}

static PyObject *
Target_get_sent_us(Target *self, void *closure)
{
    return typed_view(self->sent_us_buf, "q");
}

static PyObject *
Target_get_sizes(Target *self, void *closure)
{
    return typed_view(self->sizes_buf, "H");
}

/* stamp(packet) -> bytes: what SendHistory.stamp does, for packets Python sends. */
static PyObject *
Target_stamp(Target *self, PyObject *packet)
{
    if (!PyBytes_CheckExact(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(packet);
    const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(packet);
    if (self->ext_id <= 0 || self->ext_id > 14 || n < 12 || (in[0] & 0x1F)) {
        Py_INCREF(packet);
        return packet;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + TWCC_EXT_BYTES);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(o, in, 12);
    o[0] |= 0x10;
    twcc_stamp(self, o + 12, n + TWCC_EXT_BYTES);
    memcpy(o + 12 + TWCC_EXT_BYTES, in + 12, (size_t)(n - 12));
    return out;
}

static PyMethodDef Target_methods[] = {
    {"set", (PyCFunction)Target_set, METH_VARARGS,
     "set(fd, host, port, srtp_protect_ptr, srtp_session_ptr, keepalive): takes ownership of fd"},
    {"clear", (PyCFunction)Target_clear, METH_NOARGS, "invalidate (closes the fd): Python path from now on"},
    {"stamp", (PyCFunction)Target_stamp, METH_O,
     "stamp(packet) -> packet with the next transport-wide number (recorded as sent now)"},
    {NULL}};

static PyMemberDef Target_members[] = {
    {"sent", T_ULONGLONG, offsetof(Target, sent), READONLY, NULL},
    {"dropped", T_ULONGLONG, offsetof(Target, dropped), READONLY, NULL},
    {"errors", T_ULONGLONG, offsetof(Target, errors), READONLY, NULL},
    {"fd", T_INT, offsetof(Target, fd), READONLY, NULL},
    {"connected", T_BOOL, offsetof(Target, connected), READONLY, NULL},
    {"ext_id", T_INT, offsetof(Target, ext_id), 0, NULL},
    {"next_seq", T_LONGLONG, offsetof(Target, next_seq), READONLY, NULL},
    {NULL}};

static PyGetSetDef Target_getset[] = {
    {"valid", (getter)Target_get_valid, NULL, NULL, NULL},
    {"sent_us", (getter)Target_get_sent_us, NULL, "send times (us) by number & 8191", NULL},
    {"sizes", (getter)Target_get_sizes, NULL, "RTP sizes by number & 8191", NULL},
    {NULL}};

static PyTypeObject TargetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mediaserver._fanout.Target",
    .tp_basicsize = sizeof(Target),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Target_new,
    .tp_init = (initproc)Target_init,
    .tp_dealloc = (destructor)Target_dealloc,
    .tp_methods = Target_methods,
    .tp_members = Target_members,
    .tp_getset = Target_getset,
};

/* ---------------------------------------------------------------- Unprotector */

/* SRTP unprotect of received packets: what pylibsrtp's Session.unprotect does, without its
 * Python-level buffer handling (about half of its cost per packet). Same libsrtp session,
 * used from the event loop thread only, like pylibsrtp's. */
typedef struct {
    PyObject_HEAD
    srtp_protect_fn unprotect;   /* srtp_unprotect: same signature as srtp_protect */
    void *session;
    PyObject *keepalive;         /* the pylibsrtp Session owning `session` */
    unsigned long long failed;
} Unprotector;

static int
Unprotector_init(Unprotector *self, PyObject *args, PyObject *kwds)
{
    unsigned long long fn, session;
    PyObject *keepalive;
    if (!PyArg_ParseTuple(args, "KKO", &fn, &session, &keepalive))
        return -1;
    if (!fn || !session) {
        PyErr_SetString(PyExc_ValueError, "invalid SRTP session");
        return -1;
    }
    self->unprotect = (srtp_protect_fn)(uintptr_t)fn;
    self->session = (void *)(uintptr_t)session;
    Py_INCREF(keepalive);
    Py_XSETREF(self->keepalive, keepalive);
    return 0;
}

static void
Unprotector_dealloc(Unprotector *self)
{
    Py_XDECREF(self->keepalive);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Unprotector_unprotect(Unprotector *self, PyObject *data)
{
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    if (self->session == NULL) {
        PyErr_SetString(PyExc_ValueError, "SRTP session closed");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n > 1500) { /* pylibsrtp's limit: its buffer is one MTU */
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    unsigned char buf[BUF_SIZE];
    memcpy(buf, PyBytes_AS_STRING(data), (size_t)n);
    int len = (int)n;
    int rc = self->unprotect(self->session, buf, &len);
    if (rc != 0 || len < 0 || len > n) {
        self->failed++;
        PyErr_Format(PyExc_ValueError, "srtp_unprotect failed (libsrtp status %d)", rc);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)buf, len);
}

static PyMethodDef Unprotector_methods[] = {
    {"unprotect", (PyCFunction)Unprotector_unprotect, METH_O,
     "unprotect(packet: bytes) -> bytes; ValueError if it does not authenticate"},
    {NULL}};

static PyMemberDef Unprotector_members[] = {
    {"failed", T_ULONGLONG, offsetof(Unprotector, failed), READONLY, NULL},
    {NULL}};

static PyTypeObject UnprotectorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mediaserver._fanout.Unprotector",
    .tp_basicsize = sizeof(Unprotector),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Unprotector_init,
    .tp_dealloc = (destructor)Unprotector_dealloc,
    .tp_methods = Unprotector_methods,
    .tp_members = Unprotector_members,
};

/* ---------------------------------------------------------------- ConsumerState */

/* The numbers a Consumer changes for every packet it forwards, as C fields: the base class
 * of mediaserver.consumer.Consumer. Python reads and writes them as attributes (member
 * descriptors, like __slots__); the fan-out below reads and writes the fields directly, so
 * forwarding a copy allocates no Python objects. */
typedef struct {
    PyObject_HEAD
    long long last_in_seq;   /* extended input seq of the newest forwarded packet; <0: re-base */
    long long seq_offset;    /* out seq = in seq + seq_offset (mod 2^16) */
    long long ts_offset;     /* out timestamp = in timestamp + ts_offset (mod 2^32) */
    long long ssrc;
    long long last_out_seq;
    long long last_out_ts;
    long long packets;
    long long octets;
    long long base_in_seq;   /* first input seq of the current re-base: older ones never go out */
    double last_out_at;
    int payload_type;
    char paused;
} ConsumerState;

static PyMemberDef ConsumerState_members[] = {
    {"last_in_seq", T_LONGLONG, offsetof(ConsumerState, last_in_seq), 0, NULL},
    {"seq_offset", T_LONGLONG, offsetof(ConsumerState, seq_offset), 0, NULL},
    {"ts_offset", T_LONGLONG, offsetof(ConsumerState, ts_offset), 0, NULL},
    {"ssrc", T_LONGLONG, offsetof(ConsumerState, ssrc), 0, NULL},
    {"last_out_seq", T_LONGLONG, offsetof(ConsumerState, last_out_seq), 0, NULL},
    {"last_out_ts", T_LONGLONG, offsetof(ConsumerState, last_out_ts), 0, NULL},
    {"packets", T_LONGLONG, offsetof(ConsumerState, packets), 0, NULL},
    {"octets", T_LONGLONG, offsetof(ConsumerState, octets), 0, NULL},
    {"base_in_seq", T_LONGLONG, offsetof(ConsumerState, base_in_seq), 0, NULL},
    {"last_out_at", T_DOUBLE, offsetof(ConsumerState, last_out_at), 0, NULL},
    {"payload_type", T_INT, offsetof(ConsumerState, payload_type), 0, NULL},
    {"paused", T_BOOL, offsetof(ConsumerState, paused), 0, NULL},
    {NULL}};

static PyTypeObject ConsumerStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mediaserver._fanout.ConsumerState",
    .tp_doc = "Per-packet numbers of a Consumer, as C fields the fan-out updates in place.",
    .tp_basicsize = sizeof(ConsumerState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_members = ConsumerState_members,
};

/* ---------------------------------------------------------------- configuration */

static PyTypeObject *consumer_type = NULL;

/* The Consumer attributes that stay Python objects (read only, as pointers). */
enum { C_LAYERS, C_NATIVE, C_COUNT };
static const char *consumer_slots[C_COUNT] = {"layers", "native"};
static Py_ssize_t coff[C_COUNT];

static int
slot_offsets(PyTypeObject *type, const char **names, Py_ssize_t *offsets, int n)
{
    for (int i = 0; i < n; i++) {
        PyObject *descr = PyDict_GetItemString(type->tp_dict, names[i]);
        /* A member of `type` or a base: another class's offset would point anywhere. */
        if (descr == NULL || Py_TYPE(descr) != &PyMemberDescr_Type ||
            !PyType_IsSubtype(type, PyDescr_TYPE(descr))) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", type->tp_name,
                         names[i]);
            return -1;
        }
        PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
        if (def->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "%s.%s: unexpected member type", type->tp_name,
                         names[i]);
            return -1;
        }
        offsets[i] = def->offset;
    }
    return 0;
}

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyTypeObject *ct;
    if (!PyArg_ParseTuple(args, "O!", &PyType_Type, &ct))
        return NULL;
    if (!PyType_IsSubtype(ct, &ConsumerStateType)) {
        PyErr_Format(PyExc_TypeError, "%s does not derive from ConsumerState", ct->tp_name);
        return NULL;
    }
    Py_ssize_t offsets[C_COUNT]; /* coff only changes with consumer_type, on success */
    if (slot_offsets(ct, consumer_slots, offsets, C_COUNT) < 0)
        return NULL;
    memcpy(coff, offsets, sizeof(coff));
    Py_INCREF(ct);
    Py_XSETREF(consumer_type, ct);
    Py_RETURN_NONE;
}

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static inline int
get_ll(PyObject *v, long long *out)
{
    if (v == NULL || !PyLong_CheckExact(v))
        return -1;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- fanout */

/* 1: forwarded natively, 0: not steady (caller uses Python), -1: error set.
 *
 * Nothing is stored per receiver: NACKs for natively sent packets are answered by
 * Consumer.retransmit from the publisher's own history (one reference per received
 * packet, shared by every receiver), rebuilt with this receiver's header. */
static int
forward_native(PyObject *c, const char *payload, Py_ssize_t plen, int marker,
               long long seq_ext, long long timestamp, double now)
{
    if (Py_TYPE(c) != consumer_type)
        return 0;
    PyObject *native = SLOT(c, coff[C_NATIVE]);
    if (native == NULL || Py_TYPE(native) != &TargetType || ((Target *)native)->fd < 0)
        return 0;
    ConsumerState *s = (ConsumerState *)c;
    if (s->paused || SLOT(c, coff[C_LAYERS]) != Py_None)
        return 0;
    long long last_in = s->last_in_seq, ssrc = s->ssrc;
    int pt = s->payload_type;
    /* Packets from before the re-base (or too late to map to an unused index) go to
     * Consumer.forward, which drops them: forwarded with the current offsets they would
     * take an outgoing sequence number, hence an SRTP index, already used for another
     * packet (nonce reuse). */
    if (last_in < 0 || seq_ext < s->base_in_seq || seq_ext <= last_in - 3000 || pt < 0 ||
        pt > 127 || ssrc < 0 || ssrc > 0xFFFFFFFFLL)
        return 0;
    Target *t = (Target *)native;
    int ext_id = t->ext_id;
    int hlen = ext_id > 0 && ext_id <= 14 ? 12 + TWCC_EXT_BYTES : 12;
    if (hlen + plen > MAX_PLAIN)
        return 0; /* Python raises for it, as before */

    /* Unsigned sums: the offsets are arbitrary Python ints, so a signed sum could overflow
     * (undefined behaviour); only the low 16/32 bits matter. */
    unsigned int out_seq =
        (unsigned int)(((unsigned long long)seq_ext + (unsigned long long)s->seq_offset) & 0xFFFF);
    unsigned long out_ts = (unsigned long)(
        ((unsigned long long)timestamp + (unsigned long long)s->ts_offset) & 0xFFFFFFFFULL);
    if (seq_ext > last_in) {
        s->last_in_seq = seq_ext;
        s->last_out_seq = out_seq;
        s->last_out_ts = (long long)out_ts;
        s->last_out_at = now;
    }
    s->packets = (long long)((unsigned long long)s->packets + 1);
    s->octets = (long long)((unsigned long long)s->octets + (unsigned long long)plen);

    /* header + payload straight into the buffer libsrtp protects in place */
    unsigned char buf[BUF_SIZE];
    buf[0] = hlen > 12 ? 0x90 : 0x80;
    buf[1] = (unsigned char)(pt | (marker ? 0x80 : 0));
    buf[2] = (unsigned char)(out_seq >> 8);
    buf[3] = (unsigned char)out_seq;
    buf[4] = (unsigned char)(out_ts >> 24);
    buf[5] = (unsigned char)(out_ts >> 16);
    buf[6] = (unsigned char)(out_ts >> 8);
    buf[7] = (unsigned char)out_ts;
    buf[8] = (unsigned char)(ssrc >> 24);
    buf[9] = (unsigned char)(ssrc >> 16);
    buf[10] = (unsigned char)(ssrc >> 8);
    buf[11] = (unsigned char)ssrc;
    if (hlen > 12)
        twcc_stamp(t, buf + 12, hlen + plen);
    memcpy(buf + hlen, payload, (size_t)plen);
    int len = (int)(hlen + plen);
    if (t->protect(t->session, buf, &len) != 0) {
        t->errors++;
        return 1;
    }
    ssize_t n = t->connected
        ? send(t->fd, buf, (size_t)len, MSG_DONTWAIT)
        : sendto(t->fd, buf, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&t->addr,
                 t->addrlen);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            t->dropped++;
        else
            t->errors++;
    } else {
        t->sent++;
    }
    return 1;
}

static PyObject *
fanout(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "fanout() takes 8 arguments");
        return NULL;
    }
    PyObject *data = args[0], *now = args[6], *consumers = args[7];
    if (!PyList_Check(consumers)) {
        PyErr_SetString(PyExc_TypeError, "consumers must be a list");
        return NULL;
    }
    static PyObject *forward_name = NULL;
    if (forward_name == NULL && (forward_name = PyUnicode_InternFromString("forward")) == NULL)
        return NULL;
    long long seq_ext, timestamp, offset;
    int native_ok = consumer_type != NULL && PyBytes_CheckExact(data) &&
                    get_ll(args[2], &seq_ext) == 0 && get_ll(args[3], &timestamp) == 0 &&
                    get_ll(args[4], &offset) == 0 && offset >= 0 &&
                    offset <= PyBytes_GET_SIZE(data);
    native_ok = native_ok && PyFloat_CheckExact(now);
    double now_s = native_ok ? PyFloat_AS_DOUBLE(now) : 0.0;
    int marker = native_ok ? PyObject_IsTrue(args[1]) : 0;
    if (marker < 0)
        return NULL;
    const char *payload = native_ok ? PyBytes_AS_STRING(data) + offset : NULL;
    Py_ssize_t plen = native_ok ? PyBytes_GET_SIZE(data) - offset : 0;

    /* Index loop re-reading the size: a Python forward() may run arbitrary code. */
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(consumers); k++) {
        PyObject *c = PyList_GET_ITEM(consumers, k);
        Py_INCREF(c);
        int r = native_ok ? forward_native(c, payload, plen, marker, seq_ext, timestamp, now_s)
                          : 0;
        if (r == 0) {
            PyObject *call[8] = {c, args[0], args[1], args[2], args[3], args[4], args[5], now};
            PyObject *res = PyObject_VectorcallMethod(
                forward_name, call, 8, NULL);
            if (res == NULL)
                r = -1;
            else
                Py_DECREF(res);
        }
        Py_DECREF(c);
        if (r < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"fanout", (PyCFunction)(void (*)(void))fanout, METH_FASTCALL,
     "fanout(data, marker, seq_ext, timestamp, offset, keyframe, now, consumers)"},
    {"configure", configure, METH_VARARGS, "configure(Consumer)"},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mediaserver._fanout", NULL, -1, module_methods};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    if (PyType_Ready(&TargetType) < 0 || PyType_Ready(&UnprotectorType) < 0 ||
        PyType_Ready(&ConsumerStateType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&TargetType);
    if (PyModule_AddObject(m, "Target", (PyObject *)&TargetType) < 0) {
        Py_DECREF(&TargetType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&UnprotectorType);
    if (PyModule_AddObject(m, "Unprotector", (PyObject *)&UnprotectorType) < 0) {
        Py_DECREF(&UnprotectorType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ConsumerStateType);
    if (PyModule_AddObject(m, "ConsumerState", (PyObject *)&ConsumerStateType) < 0) {
        Py_DECREF(&ConsumerStateType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
