/*
 * executor_guard._speedups: the common case of the two hot paths, in C.
 *
 * The pure-Python code in _guard.py and _registry.py is the reference and the
 * fallback; this module only takes the *common case* of each hook and hands
 * everything else to the Python function it wraps (the "slow" path), so the
 * two can never disagree about anything but speed:
 *
 *   InitHook(slow, registry)(pool, frame)
 *       A pool built directly by application code at a call site already
 *       known, with nothing due there (no threshold, milestone, stack sample,
 *       draining pool, collected record or new peak), by the same thread name
 *       and class as the site's previous creation. It is counted and its
 *       Record filed exactly as Registry.enter does.
 *
 *   ShutdownHook(slow)(pool, record, wait, cancel_futures, frame)
 *       A first shutdown(wait=True) without cancel_futures, by a `with` block
 *       or a plain call, of a pool whose max_workers value is already in its
 *       site's table. It is counted exactly as _registry.on_shutdown does.
 *
 * The registry's state stays in the Python objects (the slotted Site and
 * Record classes, the module's dicts and deque); slots are read and written
 * at the offsets their member descriptors give. The Python paths change them
 * only while holding _registry._lock; a C path changes them only when that
 * lock is free, after every allocation that could run the garbage collector,
 * and without releasing the GIL or running Python code in between, so the
 * two never interleave (which is why free-threaded builds do not get this
 * module). Any failure before a change falls back to the slow path; nothing
 * here raises into the host.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <time.h>

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
compat_new_ref(PyObject *object)
{
    Py_INCREF(object);
    return object;
}
#define Py_NewRef(object) compat_new_ref((PyObject *)(object))
#endif

#ifdef Py_T_OBJECT_EX
#define OBJECT_SLOT Py_T_OBJECT_EX /* 3.12+ */
#else
#define OBJECT_SLOT T_OBJECT_EX
#endif

#ifdef Py_GIL_DISABLED
#error "the C hooks rely on the GIL; free-threaded builds use the pure-Python hooks"
#endif

/* -- state set once by configure() ------------------------------------- */

static PyObject *g_types;        /* _callsite.types: class -> TypeInfo */
static PyObject *g_kinds;        /* the classifier's cache: filename -> kind */
static PyObject *g_records;      /* _registry._records: id -> Record */
static PyObject *g_collected;    /* _registry._collected (deque) */
static PyObject *g_patch_dict;   /* vars(_patch): its _hooks */
static PyObject *g_churn_error;  /* ExecutorChurnError */
static PyObject *g_active;       /* threading._active: ident -> Thread */
static PyObject *g_on_collect;   /* _registry._on_collect */
static PyObject *g_monotonic;    /* time.monotonic */
static PyObject *g_app;          /* _callsite.APP */
static PyTypeObject *g_record_type;
static PyTypeObject *g_site_type;
static PyTypeObject *g_info_type;

static PyObject *s_lock, *s_locked, *s_name, *s_sites, *s_clock, *s_context, *s_wait;
static PyObject *s_hooks, *s_before_init, *s_before_shutdown, *s_init_failed, *s_max_workers,
    *s_max_workers_attr, *s_cancel_futures;

/* Slot offsets. */
static Py_ssize_t o_site_attempts, o_site_next_event, o_site_next_sample, o_site_created,
    o_site_run, o_site_live, o_site_peak_live, o_site_last_at, o_site_run_thread,
    o_site_run_class, o_site_draining, o_site_context, o_site_wait, o_site_max_workers;
static Py_ssize_t o_rec_site, o_rec_pool_id, o_rec_mode, o_rec_max_workers;
static Py_ssize_t o_info_init, o_info_shutdown, o_info_exit;

static int g_configured = 0;
/* The state above belongs to one interpreter. In any other (mod_wsgi's
   sub-interpreters, for one) the module stays unconfigured and the hooks are
   never created, so Python's own hooks run there. */
static PyInterpreterState *g_interp = NULL;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset)
{
    /* A member descriptor read from its class is the descriptor itself. */
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        return -1;
    }
    int ok = PyObject_TypeCheck(descr, &PyMemberDescr_Type)
             && ((PyMemberDescrObject *)descr)->d_member->type == OBJECT_SLOT;
    if (ok) {
        *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    Py_DECREF(descr);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, name);
        return -1;
    }
    return 0;
}

/* A slot holding a Python int, as a C integer; -1 with no error when it is
   not a small enough int (the caller then takes the slow path). */
static Py_ssize_t
slot_int(PyObject *obj, Py_ssize_t offset)
{
    PyObject *value = SLOT(obj, offset);
    if (value == NULL || !PyLong_CheckExact(value)) {
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(value);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    return n;
}

static void
slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value /* stolen */)
{
    PyObject *old = SLOT(obj, offset);
    SLOT(obj, offset) = value;
    Py_XDECREF(old); /* an int, a float or a str: no finalizer runs */
}

static Py_ssize_t
length(PyObject *container)
{
    Py_ssize_t n = PyObject_Length(container);
    if (n < 0) {
        PyErr_Clear();
        return 1; /* unknown: treat as not empty, i.e. take the slow path */
    }
    return n;
}

/* Whether _registry._lock is free. The Python paths change the registry only
   while holding it; the C paths change it only while it is free and without
   letting another thread run (nothing below releases the GIL or runs Python
   code), so the two never interleave. */
static PyObject *g_lock = NULL;         /* _registry._lock (see use_lock) */
static PyObject *g_lock_locked = NULL;  /* its bound locked() */

static int
lock_is_free(void)
{
    if (g_lock_locked == NULL) {
        return 0;
    }
    PyObject *locked = PyObject_CallNoArgs(g_lock_locked);
    if (locked == NULL) {
        PyErr_Clear();
        return 0;
    }
    int free = locked == Py_False;
    Py_DECREF(locked);
    return free;
}

/* use_lock(lock): the registry's lock, at configure() and whenever a forked
   child replaces it. */
static PyObject *
use_lock(PyObject *module, PyObject *lock)
{
    PyObject *method = PyObject_GetAttr(lock, s_locked);
    if (method == NULL) {
        return NULL;
    }
    Py_INCREF(lock);
    Py_XSETREF(g_lock, lock);
    Py_XSETREF(g_lock_locked, method);
    Py_RETURN_NONE;
}

/* time.monotonic(), without the call where the clock is known to be the same. */
static PyObject *
monotonic(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Monotonic(&t) == 0) {
        return PyFloat_FromDouble(PyTime_AsSecondsDouble(t));
    }
    PyErr_Clear();
#elif defined(__linux__)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
        return PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    }
#endif
    return PyObject_CallNoArgs(g_monotonic);
}

static PyObject *
weak_target(PyObject *record) /* new reference, or NULL without an error */
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *target = NULL;
    if (PyWeakref_GetRef(record, &target) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return target;
#else
    PyObject *target = PyWeakref_GetObject(record);
    if (target == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(target);
    return target;
#endif
}

static PyObject *
thread_name(void) /* new reference, or NULL without an error */
{
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *thread = PyDict_GetItemWithError(g_active, ident); /* borrowed */
    Py_DECREF(ident);
    if (thread == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *name = PyObject_GetAttr(thread, s_name);
    if (name == NULL) {
        PyErr_Clear();
    }
    return name;
}

/* -- InitHook ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *slow;     /* Guard.before_init, bound */
    PyObject *sites;    /* registry.sites, or NULL when the fast path is off */
    vectorcallfunc vectorcall;
    /* The last site found, by the instruction and pool class that led to it:
       a churning line repeats, and then no key, lookup or line number is
       needed (the same code offset is the same line; a site is never
       removed from its registry). */
    PyObject *last_code;
    PyObject *last_type;
    PyObject *last_site;
    int last_lasti;
} InitHook;

static int
frame_lasti(PyFrameObject *frame)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLasti(frame);
#else
    return frame->f_lasti;
#endif
}

/* The fast path: a new reference to the pool's Record, or NULL without an
   error when the slow path must run instead. */
static PyObject *
init_fast(InitHook *self, PyObject *pool, PyObject *frame_obj)
{
    if (self->sites == NULL || frame_obj == NULL || !PyFrame_Check(frame_obj)) {
        return NULL;
    }
    PyFrameObject *frame = (PyFrameObject *)frame_obj;
    PyCodeObject *code = PyFrame_GetCode(frame);
    int lasti = frame_lasti(frame);
    PyObject *key = NULL, *site = NULL, *name = NULL, *now = NULL, *record = NULL;
    PyObject *pool_id = NULL, *attempts = NULL, *created = NULL, *run = NULL, *live = NULL;

    if ((PyObject *)code == self->last_code && lasti == self->last_lasti
        && (PyObject *)Py_TYPE(pool) == self->last_type) {
        site = self->last_site;
    } else {
        PyObject *info = PyDict_GetItemWithError(g_types, (PyObject *)Py_TYPE(pool));
        if (info == NULL || Py_TYPE(info) != g_info_type
            || SLOT(info, o_info_init) != Py_None) {
            goto slow; /* unknown class, or a subclass whose __init__ runs inside */
        }
        PyObject *kind = PyDict_GetItemWithError(g_kinds, code->co_filename);
        if (kind != g_app) {
            goto slow; /* not application code, or not classified yet */
        }
        PyObject *lineno = PyLong_FromLong(PyFrame_GetLineNumber(frame));
        if (lineno == NULL) {
            goto slow;
        }
#if PY_VERSION_HEX >= 0x030B0000
        key = PyTuple_Pack(3, code->co_filename, lineno, code->co_qualname);
#else
        key = PyTuple_Pack(3, code->co_filename, lineno, code->co_name);
#endif
        Py_DECREF(lineno);
        if (key == NULL) {
            goto slow;
        }
        site = PyDict_GetItemWithError(self->sites, key); /* borrowed */
        if (site == NULL || Py_TYPE(site) != g_site_type) {
            site = NULL;
            goto slow;
        }
        /* All four first, the old values released after: a release may run
           code that calls this hook again, which must see a whole entry. */
        PyObject *old_code = self->last_code, *old_type = self->last_type;
        PyObject *old_site = self->last_site;
        self->last_code = Py_NewRef(code);
        self->last_type = Py_NewRef(Py_TYPE(pool));
        self->last_site = Py_NewRef(site);
        self->last_lasti = lasti;
        Py_XDECREF(old_code);
        Py_XDECREF(old_type);
        Py_XDECREF(old_site);
    }
    Py_INCREF(site);
    /* Everything that allocates (and so may run the garbage collector, and
       through it any Python code) happens before the lock is checked. */
    name = thread_name();
    now = name == NULL ? NULL : monotonic();
    record = now == NULL ? NULL : PyObject_CallFunctionObjArgs(
        (PyObject *)g_record_type, pool, g_on_collect, NULL);
    pool_id = record == NULL ? NULL : PyLong_FromVoidPtr(pool);
    if (pool_id == NULL || !lock_is_free()) {
        goto slow;
    }
    Py_ssize_t n_attempts = slot_int(site, o_site_attempts);
    Py_ssize_t n_event = slot_int(site, o_site_next_event);
    Py_ssize_t n_sample = slot_int(site, o_site_next_sample);
    Py_ssize_t n_created = slot_int(site, o_site_created);
    Py_ssize_t n_run = slot_int(site, o_site_run);
    Py_ssize_t n_live = slot_int(site, o_site_live);
    Py_ssize_t n_peak = slot_int(site, o_site_peak_live);
    PyObject *draining = SLOT(site, o_site_draining);
    if (n_attempts < 0 || n_event < 0 || n_sample < 0 || n_created < 0 || n_run < 0
        || n_live < 0 || n_peak < 0 || draining == NULL
        || n_attempts >= n_sample          /* a stack is due */
        || n_attempts + 1 >= n_event       /* a threshold, milestone or window */
        || n_live + 1 > n_peak             /* a new peak: the threads are counted */
        || SLOT(site, o_site_run_thread) != name
        || SLOT(site, o_site_run_class) != (PyObject *)Py_TYPE(pool)
        || length(draining) != 0 || length(g_collected) != 0) {
        goto slow;
    }
    /* Ints are not tracked by the garbage collector: these cannot run it. */
    attempts = PyLong_FromSsize_t(n_attempts + 1);
    created = PyLong_FromSsize_t(n_created + 1);
    run = PyLong_FromSsize_t(n_run + 1);
    live = PyLong_FromSsize_t(n_live + 1);
    if (attempts == NULL || created == NULL || run == NULL || live == NULL
        || PyDict_SetItem(g_records, pool_id, record) < 0) {
        goto slow;
    }
    /* From here on nothing can fail and no Python code runs. */
    slot_set(site, o_site_attempts, attempts);
    slot_set(site, o_site_created, created);
    slot_set(site, o_site_run, run);
    slot_set(site, o_site_live, live);
    slot_set(site, o_site_last_at, now);
    slot_set(record, o_rec_site, site); /* the record keeps its site */
    slot_set(record, o_rec_pool_id, pool_id);
    Py_XDECREF(key);
    Py_DECREF(name);
    Py_DECREF(code);
    return record;

slow:
    PyErr_Clear();
    Py_XDECREF(key);
    Py_XDECREF(site);
    Py_XDECREF(name);
    Py_XDECREF(now);
    Py_XDECREF(record);
    Py_XDECREF(pool_id);
    Py_XDECREF(attempts);
    Py_XDECREF(created);
    Py_XDECREF(run);
    Py_XDECREF(live);
    Py_DECREF(code);
    return NULL;
}

static PyObject *
init_hook_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    InitHook *self = (InitHook *)op;
    if (PyVectorcall_NARGS(nargsf) == 2 && kwnames == NULL) {
        PyObject *record = init_fast(self, args[0], args[1]);
        if (record != NULL) {
            return record;
        }
    }
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
init_hook_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *slow, *registry;
    if (!PyArg_ParseTuple(args, "OO:InitHook", &slow, &registry)) {
        return NULL;
    }
    if (!g_configured || PyInterpreterState_Get() != g_interp) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() has not run here");
        return NULL;
    }
    InitHook *self = (InitHook *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(slow);
    self->slow = slow;
    self->sites = NULL;
    self->vectorcall = init_hook_vectorcall;
    self->last_code = self->last_type = self->last_site = NULL;
    self->last_lasti = -1;
    /* The fast path keeps time with time.monotonic; a registry given another
       clock (tests) always takes the slow path. */
    PyObject *clock = PyObject_GetAttr(registry, s_clock);
    PyObject *sites = clock == NULL ? NULL : PyObject_GetAttr(registry, s_sites);
    if (clock == NULL || sites == NULL) {
        Py_XDECREF(clock);
        Py_DECREF(self);
        return NULL;
    }
    if (clock == g_monotonic && PyDict_CheckExact(sites)) {
        self->sites = sites;
    } else {
        Py_DECREF(sites);
    }
    Py_DECREF(clock);
    return (PyObject *)self;
}

static int
init_hook_traverse(InitHook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slow);
    Py_VISIT(self->sites);
    Py_VISIT(self->last_code);
    Py_VISIT(self->last_type);
    Py_VISIT(self->last_site);
    return 0;
}

static int
init_hook_clear(InitHook *self)
{
    Py_CLEAR(self->slow);
    Py_CLEAR(self->sites);
    Py_CLEAR(self->last_code);
    Py_CLEAR(self->last_type);
    Py_CLEAR(self->last_site);
    return 0;
}

static void
init_hook_dealloc(InitHook *self)
{
    PyObject_GC_UnTrack(self);
    init_hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
init_hook_fast(InitHook *self, void *closure)
{
    return PyBool_FromLong(self->sites != NULL);
}

static PyGetSetDef init_hook_getset[] = {
    {"fast", (getter)init_hook_fast, NULL, "Whether this hook can take the C path.", NULL},
    {NULL},
};

static PyTypeObject InitHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "executor_guard._speedups.InitHook",
    .tp_basicsize = sizeof(InitHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "InitHook(slow, registry): Guard.before_init with its common case in C.",
    .tp_new = init_hook_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(InitHook, vectorcall),
    .tp_traverse = (traverseproc)init_hook_traverse,
    .tp_clear = (inquiry)init_hook_clear,
    .tp_dealloc = (destructor)init_hook_dealloc,
    .tp_getset = init_hook_getset,
};

/* -- ShutdownHook -------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *slow; /* _registry.on_shutdown */
    vectorcallfunc vectorcall;
} ShutdownHook;

/* 1 when `code`'s id is in the frozenset `ids`, 0 when not, -1 on error. */
static int
code_in(PyObject *ids, PyCodeObject *code)
{
    PyObject *id = PyLong_FromVoidPtr(code);
    if (id == NULL) {
        return -1;
    }
    int found = PySet_Contains(ids, id);
    Py_DECREF(id);
    return found;
}

/* 1 when the shutdown was recorded (or was not the first), 0 when the slow
   path must run; never leaves an error set. */
static int
shutdown_fast(PyObject *pool, PyObject *record, PyObject *wait, PyObject *cancel,
              PyObject *frame_obj)
{
    if (Py_TYPE(record) != g_record_type || frame_obj == NULL || !PyFrame_Check(frame_obj)) {
        return 0;
    }
    /* Exactly wait=True, cancel_futures=False: anything else (wait=False,
       whose pending work is examined, or objects whose truth is Python code)
       is the slow path's. */
    if (wait != Py_True || cancel != Py_False) {
        return 0;
    }
    PyObject *target = weak_target(record);
    Py_XDECREF(target); /* only its identity is compared; the caller holds the pool */
    if (target != pool) {
        return 0;
    }
    /* The last class's info: what shutdown skips does not change for a class. */
    static PyObject *last_type = NULL, *last_info = NULL;
    PyObject *info = last_info;
    if ((PyObject *)Py_TYPE(pool) != last_type) {
        info = PyDict_GetItemWithError(g_types, (PyObject *)Py_TYPE(pool));
        if (info == NULL || Py_TYPE(info) != g_info_type) {
            PyErr_Clear();
            return 0;
        }
        PyObject *old_type = last_type, *old_info = last_info;
        last_type = Py_NewRef(Py_TYPE(pool));
        last_info = Py_NewRef(info);
        Py_XDECREF(old_type);
        Py_XDECREF(old_info);
    }
    PyObject *skip = SLOT(info, o_info_shutdown), *exits = SLOT(info, o_info_exit);
    if (skip == NULL || exits == NULL || !PyFrozenSet_CheckExact(skip)
        || !PyFrozenSet_CheckExact(exits)) {
        return 0;
    }
    /* Held: the walk allocates frame objects, which may run the collector and
       through it code that empties the type cache. */
    Py_INCREF(skip);
    Py_INCREF(exits);
    /* Past the class's own shutdown overrides: is the caller an __exit__? */
    PyFrameObject *frame = (PyFrameObject *)frame_obj;
    Py_INCREF(frame);
    int context = 0, skipped = 0;
    while (frame != NULL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        skipped = code_in(skip, code);
        if (skipped == 0) {
            context = code_in(exits, code);
        }
        Py_DECREF(code);
        if (skipped <= 0 || context < 0) {
            break;
        }
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    Py_XDECREF(frame);
    Py_DECREF(skip);
    Py_DECREF(exits);
    if (skipped < 0 || context < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }

    PyObject *site = SLOT(record, o_rec_site), *pool_id = SLOT(record, o_rec_pool_id);
    if (site == NULL || Py_TYPE(site) != g_site_type || pool_id == NULL) {
        return 0;
    }
    PyObject *workers = SLOT(record, o_rec_max_workers);
    if (workers == NULL) {
        workers = Py_None;
    }
    /* The table is hashed and compared below, after the lock check: only
       None and exact ints, whose hash and equality run no Python code. */
    PyObject *table = SLOT(site, o_site_max_workers);
    if (table == NULL || !PyDict_CheckExact(table) || PyDict_GET_SIZE(table) > 64
        || (workers != Py_None && !PyLong_CheckExact(workers))) {
        return 0;
    }
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(table, &position, &key, &value)) {
        if (key != Py_None && !PyLong_CheckExact(key)) {
            return 0;
        }
    }
    /* No allocation from here on can run the garbage collector. */
    if (!lock_is_free()) {
        return 0;
    }
    PyObject *filed = PyDict_GetItemWithError(g_records, pool_id); /* borrowed */
    if (filed != record) {
        int error = PyErr_Occurred() != NULL;
        PyErr_Clear();
        return error ? 0 : 1; /* not filed: an earlier shutdown recorded it */
    }
    Py_ssize_t mode_offset = context ? o_site_context : o_site_wait;
    Py_ssize_t n_mode = slot_int(site, mode_offset);
    Py_ssize_t n_live = slot_int(site, o_site_live);
    if (n_mode < 0 || n_live < 1) {
        return 0;
    }
    PyObject *counted = PyDict_GetItemWithError(table, workers); /* borrowed */
    Py_ssize_t n_counted = counted != NULL && PyLong_CheckExact(counted)
                               ? PyLong_AsSsize_t(counted) : -1;
    if (n_counted < 0) {
        PyErr_Clear();
        return 0; /* a new max_workers value: the table's bound applies */
    }
    PyObject *count = PyLong_FromSsize_t(n_counted + 1);
    PyObject *bumped = PyLong_FromSsize_t(n_mode + 1);
    PyObject *live = PyLong_FromSsize_t(n_live - 1);
    if (count == NULL || bumped == NULL || live == NULL
        || PyDict_SetItem(table, workers, count) < 0) {
        goto fail;
    }
    /* The caller's reference keeps the record alive: deleting it from the
       table runs no finalizer. */
    if (PyDict_DelItem(g_records, pool_id) < 0) {
        PyErr_Clear();
        PyObject *back = PyLong_FromSsize_t(n_counted); /* undo the table's count */
        if (back == NULL || PyDict_SetItem(table, workers, back) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(back);
        goto fail;
    }
    Py_DECREF(count);
    PyObject *mode = context ? s_context : s_wait;
    Py_INCREF(mode);
    slot_set(record, o_rec_mode, mode);
    slot_set(site, mode_offset, bumped);
    slot_set(site, o_site_live, live);
    return 1;

fail:
    PyErr_Clear();
    Py_XDECREF(count);
    Py_XDECREF(bumped);
    Py_XDECREF(live);
    return 0;
}

static PyObject *
shutdown_hook_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                         PyObject *kwnames)
{
    ShutdownHook *self = (ShutdownHook *)op;
    if (PyVectorcall_NARGS(nargsf) == 5 && kwnames == NULL
        && shutdown_fast(args[0], args[1], args[2], args[3], args[4])) {
        Py_RETURN_NONE;
    }
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
shutdown_hook_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *slow;
    if (!PyArg_ParseTuple(args, "O:ShutdownHook", &slow)) {
        return NULL;
    }
    if (!g_configured || PyInterpreterState_Get() != g_interp) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() has not run here");
        return NULL;
    }
    ShutdownHook *self = (ShutdownHook *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(slow);
    self->slow = slow;
    self->vectorcall = shutdown_hook_vectorcall;
    return (PyObject *)self;
}

static int
shutdown_hook_traverse(ShutdownHook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slow);
    return 0;
}

static int
shutdown_hook_clear(ShutdownHook *self)
{
    Py_CLEAR(self->slow);
    return 0;
}

static void
shutdown_hook_dealloc(ShutdownHook *self)
{
    PyObject_GC_UnTrack(self);
    shutdown_hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ShutdownHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "executor_guard._speedups.ShutdownHook",
    .tp_basicsize = sizeof(ShutdownHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ShutdownHook(slow): _registry.on_shutdown with its common case in C.",
    .tp_new = shutdown_hook_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ShutdownHook, vectorcall),
    .tp_traverse = (traverseproc)shutdown_hook_traverse,
    .tp_clear = (inquiry)shutdown_hook_clear,
    .tp_dealloc = (destructor)shutdown_hook_dealloc,
};


/* -- Wrapper: the patched __init__ and shutdown themselves --------------- */

/* The generated Python wrappers of _patch.py, in C: no frame of their own,
   so the caller of the patched method is the current frame. They hand the
   hooks of _patch._hooks (read at each call) the same arguments, and call the
   InitHook/ShutdownHook fast paths directly when those are the hooks. */

enum { WRAP_INIT = 0, WRAP_SHUTDOWN = 1 };

typedef struct {
    PyObject_HEAD
    PyObject *original;
    PyObject *dict; /* __wrapped__, __name__, __doc__... (functools.update_wrapper) */
    PyObject *weakrefs;
    vectorcallfunc vectorcall;
    int kind;
    /* The original's parameters: a call that would not bind goes straight to
       it (and its TypeError), as the signature-exact Python wrapper does. */
    PyObject *names;            /* every parameter, positional ones first */
    PyObject *kwonly_required;  /* keyword-only parameters without a default */
    Py_ssize_t argcount;        /* positional parameters */
    Py_ssize_t required;        /* leading positional parameters without a default */
} Wrapper;

/* Whether a call with these arguments binds to the original's parameters. */
static int
binds(Wrapper *self, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs > self->argcount) {
        return 0;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    Py_ssize_t nnames = PyTuple_GET_SIZE(self->names);
    Py_ssize_t given_required = nargs < self->required ? nargs : self->required;
    Py_ssize_t kwonly_given = 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t found = -1;
        for (Py_ssize_t i = 0; i < nnames && found < 0; i++) {
            PyObject *name = PyTuple_GET_ITEM(self->names, i);
            if (name == key || PyUnicode_Compare(name, key) == 0) {
                found = i;
            }
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (found < 0 || found < nargs) {
            return 0; /* unknown, or given twice */
        }
        if (found < self->required) {
            given_required++;
        }
        if (found >= self->argcount && PySequence_Contains(self->kwonly_required, key) == 1) {
            kwonly_given++;
        }
    }
    return given_required == self->required
           && kwonly_given == PyTuple_GET_SIZE(self->kwonly_required);
}

static PyObject *
current_frame(void) /* borrowed; Py_None when no Python code is running */
{
    PyFrameObject *frame = PyEval_GetFrame();
    return frame == NULL ? Py_None : (PyObject *)frame;
}

/* The keyword argument `name` among a vectorcall's, or NULL (borrowed). */
static PyObject *
keyword(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject *name)
{
    if (kwnames == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (key == name) {
            return args[nargs + i];
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int equal = PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, i), name) == 0;
        if (equal) {
            return args[nargs + i];
        }
    }
    PyErr_Clear();
    return NULL;
}

/* The error being raised, and then raised again (3.12 changed the API). */
static PyObject *
take_error(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void
give_error(PyObject *error) /* steals */
{
    if (error == NULL) {
        return;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(error);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(error)), error, PyException_GetTraceback(error));
#endif
}

static PyObject *
wrapper_init(Wrapper *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *hooks = PyDict_GetItemWithError(g_patch_dict, s_hooks); /* borrowed */
    if (hooks == NULL || hooks == Py_None || nargs < 1 || !binds(self, nargs, kwnames)) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    }
    Py_INCREF(hooks);
    PyObject *pool = args[0];
    PyObject *frame = current_frame();
    PyObject *record = NULL;
    PyObject *hook = PyObject_GetAttr(hooks, s_before_init);
    if (hook != NULL && Py_TYPE(hook) == &InitHookType) {
        record = init_fast((InitHook *)hook, pool, frame);
        if (record == NULL) {
            PyObject *call[2] = {pool, frame};
            record = PyObject_Vectorcall(((InitHook *)hook)->slow, call, 2, NULL);
        }
    } else if (hook != NULL) {
        PyObject *call[2] = {pool, frame};
        record = PyObject_Vectorcall(hook, call, 2, NULL);
    }
    Py_XDECREF(hook);
    if (record == NULL) {
        Py_DECREF(hooks);
        if (PyErr_ExceptionMatches(g_churn_error)) {
            /* A fresh traceback: it starts at the call site. */
            PyObject *error = take_error();
            if (error != NULL) {
                PyException_SetTraceback(error, Py_None);
                PyException_SetCause(error, NULL); /* `from None` */
            }
            give_error(error);
        }
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    if (result == NULL) {
        if (record != Py_None) {
            PyObject *error = take_error();
            PyObject *undone = PyObject_CallMethodOneArg(hooks, s_init_failed, record);
            if (undone == NULL) {
                /* As `raise` inside the Python wrapper's `except`: the new
                   error propagates, with the constructor's as its context. */
                PyObject *later = take_error();
                if (later != NULL && error != NULL) {
                    PyException_SetContext(later, error); /* steals error */
                } else {
                    Py_XDECREF(error);
                }
                error = later;
            }
            Py_XDECREF(undone);
            give_error(error);
        }
        Py_DECREF(record);
        Py_DECREF(hooks);
        return NULL;
    }
    if (record != Py_None) {
        PyObject *workers = nargs >= 2 ? args[1] : keyword(args, nargs, kwnames, s_max_workers);
        if (workers == NULL || workers == Py_None) {
            workers = PyObject_GetAttr(pool, s_max_workers_attr);
            if (workers == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
                workers = Py_NewRef(Py_None);
            }
        } else {
            Py_INCREF(workers);
        }
        int failed = workers == NULL || PyObject_SetAttr(record, s_max_workers, workers) < 0;
        Py_XDECREF(workers);
        if (failed) { /* as the Python wrapper's assignment would raise */
            Py_DECREF(result);
            result = NULL;
        }
    }
    Py_DECREF(record);
    Py_DECREF(hooks);
    return result;
}

static PyObject *
wrapper_shutdown(Wrapper *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *hooks = PyDict_GetItemWithError(g_patch_dict, s_hooks); /* borrowed */
    if (hooks != NULL && hooks != Py_None && nargs >= 1 && binds(self, nargs, kwnames)) {
        PyObject *pool = args[0];
        PyObject *id = PyLong_FromVoidPtr(pool);
        PyObject *record = id == NULL ? NULL : PyDict_GetItemWithError(g_records, id);
        Py_XDECREF(id);
        if (record == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (record != NULL) {
            Py_INCREF(record);
            Py_INCREF(hooks);
            PyObject *wait = nargs >= 2 ? args[1] : keyword(args, nargs, kwnames, s_wait);
            PyObject *cancel = nargs >= 3 ? args[2]
                                          : keyword(args, nargs, kwnames, s_cancel_futures);
            PyObject *call[5] = {pool, record, wait ? wait : Py_True, cancel ? cancel : Py_False,
                                 current_frame()};
            PyObject *hook = PyObject_GetAttr(hooks, s_before_shutdown);
            PyObject *done = NULL;
            if (hook != NULL && Py_TYPE(hook) == &ShutdownHookType
                && shutdown_fast(call[0], call[1], call[2], call[3], call[4])) {
                done = Py_NewRef(Py_None);
            } else if (hook != NULL) {
                PyObject *target = Py_TYPE(hook) == &ShutdownHookType
                                       ? ((ShutdownHook *)hook)->slow : hook;
                done = PyObject_Vectorcall(target, call, 5, NULL);
            }
            Py_XDECREF(hook);
            Py_DECREF(hooks);
            /* Let go of the record before the original runs: the pool may die
               with this call, and a record alive then would be queued. */
            Py_DECREF(record);
            if (done == NULL) {
                return NULL;
            }
            Py_DECREF(done);
        }
    } else if (hooks == NULL && PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
}

static PyObject *
wrapper_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Wrapper *self = (Wrapper *)op;
    if (self->original == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "executor_guard wrapper used after clearing");
        return NULL;
    }
    if (self->kind == WRAP_INIT) {
        return wrapper_init(self, args, nargsf, kwnames);
    }
    return wrapper_shutdown(self, args, nargsf, kwnames);
}

static PyObject *
wrapper_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
wrapper_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *original, *names, *kwonly_required;
    const char *kind;
    Py_ssize_t argcount, required;
    if (!PyArg_ParseTuple(args, "OsO!nnO!:Wrapper", &original, &kind, &PyTuple_Type, &names,
                          &argcount, &required, &PyTuple_Type, &kwonly_required)) {
        return NULL;
    }
    int which = strcmp(kind, "__init__") == 0 ? WRAP_INIT
                : strcmp(kind, "shutdown") == 0 ? WRAP_SHUTDOWN : -1;
    if (which < 0 || !PyCallable_Check(original) || argcount < 1 || required < 1
        || required > argcount || argcount > PyTuple_GET_SIZE(names)) {
        PyErr_SetString(PyExc_ValueError,
                        "Wrapper(callable, '__init__' or 'shutdown', names, argcount, "
                        "required, kwonly_required)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_SetString(PyExc_TypeError, "parameter names must be str");
            return NULL;
        }
    }
    if (!g_configured || PyInterpreterState_Get() != g_interp) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() has not run here");
        return NULL;
    }
    Wrapper *self = (Wrapper *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->original = Py_NewRef(original);
    self->dict = NULL;
    self->weakrefs = NULL;
    self->vectorcall = wrapper_vectorcall;
    self->kind = which;
    self->names = Py_NewRef(names);
    self->kwonly_required = Py_NewRef(kwonly_required);
    self->argcount = argcount;
    self->required = required;
    return (PyObject *)self;
}

/* inspect.signature() of the original, computed when asked (inspect is a
   heavy import that patching must not pay). */
static PyObject *
wrapper_signature(Wrapper *self, void *closure)
{
    PyObject *inspect = PyImport_ImportModule("inspect");
    if (inspect == NULL) {
        return NULL;
    }
    PyObject *signature = PyObject_CallMethod(inspect, "signature", "O", self->original);
    Py_DECREF(inspect);
    return signature;
}

static PyObject *
wrapper_repr(Wrapper *self)
{
    return PyUnicode_FromFormat("<executor_guard wrapper of %R>", self->original);
}

static int
wrapper_traverse(Wrapper *self, visitproc visit, void *arg)
{
    Py_VISIT(self->original);
    Py_VISIT(self->dict);
    return 0;
}

static int
wrapper_clear(Wrapper *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->dict);
    return 0;
}

static void
wrapper_dealloc(Wrapper *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    wrapper_clear(self);
    Py_CLEAR(self->names);
    Py_CLEAR(self->kwonly_required);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Pickled by qualified name, as the function it replaces is. */
static PyObject *
wrapper_reduce(PyObject *self, PyObject *unused)
{
    return PyObject_GetAttrString(self, "__qualname__");
}

static PyMethodDef wrapper_methods[] = {
    {"__reduce__", wrapper_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyGetSetDef wrapper_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"__signature__", (getter)wrapper_signature, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject WrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "executor_guard._speedups.Wrapper",
    .tp_basicsize = sizeof(Wrapper),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "Wrapper(original, '__init__' or 'shutdown', names, argcount, required, "
              "kwonly_required): a patched executor method.",
    .tp_new = wrapper_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Wrapper, vectorcall),
    .tp_descr_get = wrapper_get,
    .tp_dictoffset = offsetof(Wrapper, dict),
    .tp_weaklistoffset = offsetof(Wrapper, weakrefs),
    .tp_getset = wrapper_getset,
    .tp_methods = wrapper_methods,
    .tp_repr = (reprfunc)wrapper_repr,
    .tp_traverse = (traverseproc)wrapper_traverse,
    .tp_clear = (inquiry)wrapper_clear,
    .tp_dealloc = (destructor)wrapper_dealloc,
};

/* -- configure ----------------------------------------------------------- */

static int
keep(PyObject **slot, PyObject *value)
{
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 0;
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {
        "types", "kinds", "records", "collected", "patch_globals", "active",
        "on_collect", "monotonic", "app", "churn_error", "Record", "Site", "TypeInfo", "lock",
        NULL,
    };
    PyObject *types, *kinds, *records, *collected, *patch_dict, *active,
        *on_collect, *monotonic, *app, *churn_error;
    PyTypeObject *record_type, *site_type, *info_type;
    PyObject *lock;
    if (g_configured && PyInterpreterState_Get() != g_interp) {
        Py_RETURN_FALSE; /* another interpreter owns this module's state */
    }
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O!O!O!OO!O!OOOOO!O!O!O:configure", names, &PyDict_Type, &types,
            &PyDict_Type, &kinds, &PyDict_Type, &records, &collected,
            &PyDict_Type, &patch_dict, &PyDict_Type, &active, &on_collect,
            &monotonic, &app, &churn_error, &PyType_Type, &record_type, &PyType_Type,
            &site_type, &PyType_Type, &info_type, &lock)) {
        return NULL;
    }
    if (!PyType_IsSubtype(record_type, &_PyWeakref_RefType)) {
        PyErr_SetString(PyExc_TypeError, "Record must be a weakref.ref subclass");
        return NULL;
    }
    if (slot_offset(site_type, "attempts", &o_site_attempts) < 0
        || slot_offset(site_type, "next_event", &o_site_next_event) < 0
        || slot_offset(site_type, "next_sample", &o_site_next_sample) < 0
        || slot_offset(site_type, "created", &o_site_created) < 0
        || slot_offset(site_type, "run", &o_site_run) < 0
        || slot_offset(site_type, "live", &o_site_live) < 0
        || slot_offset(site_type, "peak_live", &o_site_peak_live) < 0
        || slot_offset(site_type, "last_at", &o_site_last_at) < 0
        || slot_offset(site_type, "run_thread", &o_site_run_thread) < 0
        || slot_offset(site_type, "run_class", &o_site_run_class) < 0
        || slot_offset(site_type, "draining", &o_site_draining) < 0
        || slot_offset(site_type, "context", &o_site_context) < 0
        || slot_offset(site_type, "wait", &o_site_wait) < 0
        || slot_offset(site_type, "max_workers", &o_site_max_workers) < 0
        || slot_offset(record_type, "site", &o_rec_site) < 0
        || slot_offset(record_type, "pool_id", &o_rec_pool_id) < 0
        || slot_offset(record_type, "mode", &o_rec_mode) < 0
        || slot_offset(record_type, "max_workers", &o_rec_max_workers) < 0
        || slot_offset(info_type, "init", &o_info_init) < 0
        || slot_offset(info_type, "shutdown", &o_info_shutdown) < 0
        || slot_offset(info_type, "exit", &o_info_exit) < 0) {
        return NULL;
    }
    keep(&g_types, types);
    keep(&g_kinds, kinds);
    keep(&g_records, records);
    keep(&g_collected, collected);
    PyObject *used = use_lock(module, lock);
    if (used == NULL) {
        return NULL;
    }
    Py_DECREF(used);
    keep(&g_patch_dict, patch_dict);
    keep(&g_churn_error, churn_error);
    keep(&g_active, active);
    keep(&g_on_collect, on_collect);
    keep(&g_monotonic, monotonic);
    keep(&g_app, app);
    keep((PyObject **)&g_record_type, (PyObject *)record_type);
    keep((PyObject **)&g_site_type, (PyObject *)site_type);
    keep((PyObject **)&g_info_type, (PyObject *)info_type);
    g_configured = 1;
    g_interp = PyInterpreterState_Get();
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"use_lock", use_lock, METH_O, "Use this lock as the registry's (after a fork)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Give the hooks the registry's objects; False when another interpreter already did."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "executor_guard._speedups",
    .m_doc = "The common case of executor_guard's two hot paths, in C (optional).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    s_hooks = PyUnicode_InternFromString("_hooks");
    s_before_init = PyUnicode_InternFromString("before_init");
    s_before_shutdown = PyUnicode_InternFromString("before_shutdown");
    s_init_failed = PyUnicode_InternFromString("init_failed");
    s_max_workers = PyUnicode_InternFromString("max_workers");
    s_max_workers_attr = PyUnicode_InternFromString("_max_workers");
    s_cancel_futures = PyUnicode_InternFromString("cancel_futures");
    if (!s_hooks || !s_before_init || !s_before_shutdown || !s_init_failed || !s_max_workers
        || !s_max_workers_attr || !s_cancel_futures) {
        return NULL;
    }
    s_lock = PyUnicode_InternFromString("_lock");
    s_locked = PyUnicode_InternFromString("locked");
    s_name = PyUnicode_InternFromString("_name");
    s_sites = PyUnicode_InternFromString("sites");
    s_clock = PyUnicode_InternFromString("clock");
    s_context = PyUnicode_InternFromString("context");
    s_wait = PyUnicode_InternFromString("wait");
    if (!s_lock || !s_locked || !s_name || !s_sites || !s_clock || !s_context || !s_wait) {
        return NULL;
    }
    if (PyType_Ready(&InitHookType) < 0 || PyType_Ready(&ShutdownHookType) < 0
        || PyType_Ready(&WrapperType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&InitHookType);
    Py_INCREF(&ShutdownHookType);
    Py_INCREF(&WrapperType);
    if (PyModule_AddObject(module, "InitHook", (PyObject *)&InitHookType) < 0
        || PyModule_AddObject(module, "ShutdownHook", (PyObject *)&ShutdownHookType) < 0
        || PyModule_AddObject(module, "Wrapper", (PyObject *)&WrapperType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
