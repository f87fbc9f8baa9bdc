/*
 * shbuf.h - the C API of shbuf: page directory shared buffers over Xen grant
 * tables (or the shbuf simulator), for C99 and C++ callers.
 *
 * It wraps the C++ library (include/shbuf/): a provider grants and maps pages,
 * a frontend buffer shares a buffer through a page directory, a backend buffer
 * attaches to one. The headers there say in more detail what each operation
 * refuses; every failure of theirs reaches C unchanged, as a code and a
 * message.
 *
 * Conventions, for every function below unless it says otherwise:
 *
 *  - Return value: 0 on success or a negative errno value (-EINVAL, -ENOSPC,
 *    ...), the code the C++ library reported. errno is left alone.
 *  - Messages: a failing call records a message naming what was refused and
 *    why, ending with the errno name: "shbuf_frontend_create: a buffer of 0
 *    pages is invalid (EINVAL)". It is recorded on the handle the call was
 *    made on (read it with shbuf_provider_last_error(),
 *    shbuf_frontend_last_error(), shbuf_backend_last_error()) and for the
 *    calling thread (shbuf_last_error()), and passed to the logger set with
 *    shbuf_set_logger(). A message stays valid until the next failing call on
 *    the same handle or thread (or until the handle is destroyed); successful
 *    calls leave it alone. Where there is no message yet, "" is returned.
 *  - NULL: a NULL handle or NULL out-pointer is refused with -EINVAL and a
 *    message naming the argument ("shbuf_frontend_create: out is NULL").
 *    Functions that destroy a handle accept NULL and do nothing; accessors
 *    that return a value rather than a code return NULL or 0 for a NULL
 *    handle and record the message for the thread.
 *  - Configuration structs start with `size_t size`, which the caller sets to
 *    sizeof the struct it was compiled with, so that the structs can grow
 *    without breaking callers: fields past `size` take their defaults. A
 *    size smaller than the first version of the struct, or larger with
 *    non-zero bytes past the fields this library knows, is refused with
 *    -EINVAL. A field whose comment names a default takes it when zero, so
 *    a zero-initialised struct asks for every default.
 *  - Nothing is printed: the library never writes to stdout or stderr.
 *  - No exception or abort crosses this API. Should the C++ library throw
 *    despite its promise not to, the call fails with -ENOMEM for an
 *    allocation failure and -EIO for anything else, with a message saying so;
 *    whatever the call had built is released first.
 *  - Threads: a provider handle may be used from several threads at once,
 *    but its last-error message is only meaningful while no other thread
 *    fails on it; use shbuf_last_error() in threaded code. A frontend or
 *    backend handle must be used by one thread at a time.
 *  - fork(): a child process must open its own provider. With the sim
 *    provider, handles inherited across fork() refuse every operation with
 *    -EPERM; destroying them in the child only drops the child's copies of
 *    the mappings and leaves the parent's grants alone.
 */
#ifndef SHBUF_H
#define SHBUF_H

#include <stddef.h>
#include <stdint.h>

#define SHBUF_VERSION_MAJOR 0
#define SHBUF_VERSION_MINOR 1
#define SHBUF_VERSION_PATCH 0
/* "MAJOR.MINOR.PATCH", equal to what shbuf_version() returns. */
#define SHBUF_VERSION_STRING "0.1.0"

#if defined(__GNUC__) || defined(__clang__)
#define SHBUF_API __attribute__((visibility("default")))
#else
#define SHBUF_API
#endif

/* The protocol's page size, whatever the host's is. */
#define SHBUF_PAGE_SIZE 4096
/* Buffer grefs one directory page carries after its link. */
#define SHBUF_GREFS_PER_DIR_PAGE 1023
/* Default bound on a buffer's size in pages (4 GiB). */
#define SHBUF_DEFAULT_MAX_PAGES ((size_t)1 << 20)

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handles. */
typedef struct shbuf_provider shbuf_provider;
typedef struct shbuf_frontend shbuf_frontend;
typedef struct shbuf_backend shbuf_backend;

/* Who allocates the buffer pages. */
enum shbuf_alloc_mode {
  /* The frontend grants the buffer; the backend maps it. */
  SHBUF_FRONTEND_ALLOC = 0,
  /* The backend grants the buffer and writes its grefs into the frontend's
   * directory; the frontend maps them (shbuf_frontend_map()). */
  SHBUF_BACKEND_ALLOC = 1
};

/* How the peer may access, or we map, the buffer pages. */
enum shbuf_access { SHBUF_ACCESS_READ_WRITE = 0, SHBUF_ACCESS_READ_ONLY = 1 };

/* How shbuf_backend_attach() reads the frontend's directory pages. */
enum shbuf_directory_read {
  /* Grant copy where the provider has it, else map each page. */
  SHBUF_DIRECTORY_READ_AUTO = 0,
  /* Grant copy only (-EOPNOTSUPP where there is none). */
  SHBUF_DIRECTORY_READ_COPY = 1,
  /* Map each directory page, one at a time. */
  SHBUF_DIRECTORY_READ_MAP = 2
};

/* Log levels passed to the logger. The library reports only errors now. */
enum shbuf_log_level {
  SHBUF_LOG_ERROR = 0,
  SHBUF_LOG_WARNING = 1,
  SHBUF_LOG_INFO = 2,
  SHBUF_LOG_DEBUG = 3
};

/* ------------------------------------------------------------------------ */
/* Library */

/* The library's version, "MAJOR.MINOR.PATCH"; a static string. */
SHBUF_API const char* shbuf_version(void);

/* The message of the calling thread's last failing call, "" if none yet. It
 * stays valid until the thread's next failing call or its exit. */
SHBUF_API const char* shbuf_last_error(void);

/* A logger: called, in the failing thread, with each error message as it is
 * produced; `message` is valid only during the call. It must not call back
 * into shbuf. */
typedef void shbuf_log_fn(void* user, int level, const char* message);

/* Sets the process-wide logger (NULL: none, the default). `user` is passed
 * back to it as given. Safe to call from any thread; a call already in
 * progress may still reach the previous logger. */
SHBUF_API void shbuf_set_logger(shbuf_log_fn* fn, void* user);

/* ------------------------------------------------------------------------ */
/* Providers */

/* Options for shbuf_provider_open(). Zero-initialise, set `size`, then set
 * what differs from the defaults. */
struct shbuf_provider_options {
  /* sizeof(struct shbuf_provider_options). */
  size_t size;
  /* "sim" or "xen"; NULL: "sim". */
  const char* name;
  /* sim: the domain to act as, below 0x7ff0 where Xen's reserved ids begin
   * (-EINVAL otherwise). xen:
   * ignored, the provider acts as the domain it runs in ($SHBUF_XEN_DOMID,
   * else found out from /proc/xen and xenstore). */
  uint32_t domid;
  /* sim: the instance directory; NULL or "": $SHBUF_SIM, else the default
   * instance ("$XDG_RUNTIME_DIR/shbuf-sim" or "/dev/shm/shbuf-sim-<uid>"). */
  const char* sim_path;
  /* sim: grant table size per domain in 4 KiB frames of 512 entries, used
   * only when the instance is created; 0: 1024. */
  uint32_t max_grant_frames;
  /* sim: faults to inject, in the SHBUF_SIM_FAULT syntax
   * ("share|end|map|unmap|copy:K[:ERR]" or "gref:DOMID:GREF[:ERR]", comma
   * separated), applied before $SHBUF_SIM_FAULT; NULL or "": none. */
  const char* sim_faults;
};

/* Opens the named grant provider and stores a new handle in *out (NULL on
 * failure). `opts` may be NULL for every default (the sim provider as domain
 * 0 on the default instance). The caller owns the handle: close it with
 * shbuf_provider_close().
 * Refuses: -EINVAL for an unknown name, a bad struct size, a domid out of
 * range, sim-only options given to "xen", max_grant_frames out of range or a
 * malformed fault list; -ENODEV for "xen" where /dev/xen/gntalloc or gntdev
 * is missing or shbuf was built without libxen, -EACCES where they cannot be
 * opened, -ENXIO where the own domain id cannot be found out; for "sim", the
 * simulator's errors (-EUCLEAN for a damaged instance, -ETIMEDOUT when its
 * lock is held too long, system errors opening its files). */
SHBUF_API int shbuf_provider_open(const struct shbuf_provider_options* opts, shbuf_provider** out);

/* Releases the caller's handle; NULL is ignored. Buffers created or attached
 * through it stay usable: the provider itself goes when the last of them is
 * freed or detached. The handle must not be used afterwards. */
SHBUF_API void shbuf_provider_close(shbuf_provider* provider);

/* The domain the provider acts as (0..65535), or -EINVAL for NULL. */
SHBUF_API int shbuf_provider_domid(const shbuf_provider* provider);

/* "sim" or "xen"; NULL for a NULL handle. A static string. */
SHBUF_API const char* shbuf_provider_name(const shbuf_provider* provider);

/* Stores in *pages how many pages whose revocation was deferred, because a
 * peer still mapped them when they were freed, the provider still keeps
 * (reclaiming what it can first). Always 0 for xen, whose kernel driver keeps
 * such pages out of sight. */
SHBUF_API int shbuf_provider_pending_pages(shbuf_provider* provider, size_t* pages);

/* The message of the last failing call made on this provider (including
 * shbuf_frontend_create() and shbuf_backend_attach() through it); "" if none
 * yet or for NULL. Valid until the next failing call on it or its close. */
SHBUF_API const char* shbuf_provider_last_error(const shbuf_provider* provider);

/* ------------------------------------------------------------------------ */
/* Frontend buffers */

struct shbuf_frontend_config {
  /* sizeof(struct shbuf_frontend_config). */
  size_t size;
  /* The backend's domain id (0..65535). */
  uint32_t backend;
  /* Buffer size in pages, 1..max_pages. */
  size_t pages;
  /* enum shbuf_alloc_mode; 0: SHBUF_FRONTEND_ALLOC. */
  int mode;
  /* Larger requests are refused (-E2BIG), and in backend-allocated mode the
   * backend's directory is read up to this bound; 0: SHBUF_DEFAULT_MAX_PAGES. */
  size_t max_pages;
  /* Frontend-allocated: how the backend may access the buffer pages
   * (enum shbuf_access; 0: read-write). The directory is always granted
   * read-only in that mode, writable in backend-allocated mode. */
  int buffer_access;
};

/* Creates a frontend buffer through `provider`: frontend-allocated, it grants
 * the buffer and the directory pages (ceil(pages / 1023)) to the backend and
 * fills the directory; backend-allocated, it grants only the directory, for
 * the backend to fill. Stores a new handle in *out (NULL on failure); the
 * caller owns it and releases it with shbuf_frontend_free(). Tell the backend
 * shbuf_frontend_directory_gref() and the page count.
 * Refuses: -EINVAL for 0 pages, a bad struct size, mode, access or domain
 * id; -E2BIG above max_pages; the provider's errors when granting (-ENOSPC
 * for a full grant table or gntalloc's limit, -ENOMEM, -EINVAL for a bad
 * peer). On failure nothing stays granted. */
SHBUF_API int shbuf_frontend_create(shbuf_provider* provider,
                                    const struct shbuf_frontend_config* config,
                                    shbuf_frontend** out);

/* Backend-allocated mode: reads the grefs the backend wrote into the
 * directory (once; they are validated like the wire format's decoder does,
 * and a gref listed twice is refused) and maps them. Afterwards
 * shbuf_frontend_data() is the buffer.
 * Refuses: -EINVAL in frontend-allocated mode, -EALREADY when mapped, the
 * decoder's errors for a bad directory (-EBADMSG for a broken chain, -ELOOP,
 * -EINVAL for gref 0 or one listed twice), the provider's map errors
 * (-EINVAL as gntdev reports a refusal). On failure nothing stays mapped. */
SHBUF_API int shbuf_frontend_map(shbuf_frontend* frontend);

/* Backend-allocated mode: unmaps what shbuf_frontend_map() mapped; the
 * pointer shbuf_frontend_data() gave is invalid afterwards.
 * Refuses: -EINVAL when not mapped (always in frontend-allocated mode). */
SHBUF_API int shbuf_frontend_unmap(shbuf_frontend* frontend);

/* Unmaps, ends every grant create made, and destroys the handle, whatever the
 * outcome; NULL is ignored (0). Returns the first failure: -EBUSY when the
 * backend still maps some page; the provider then keeps those pages, neither
 * freed nor reused, until the backend unmaps them (see
 * shbuf_provider_pending_pages()). As the handle is gone, the message is
 * recorded for the thread (shbuf_last_error()) and on the provider. */
SHBUF_API int shbuf_frontend_free(shbuf_frontend* frontend);

/* The buffer's memory, shbuf_frontend_size() bytes, valid until unmap or
 * free; owned by the handle. NULL in backend-allocated mode until mapped, and
 * for a NULL handle. */
SHBUF_API void* shbuf_frontend_data(const shbuf_frontend* frontend);

/* The size of shbuf_frontend_data() in bytes: pages * SHBUF_PAGE_SIZE, or 0
 * where there is no data. */
SHBUF_API size_t shbuf_frontend_size(const shbuf_frontend* frontend);

/* The buffer's size in pages, as created; 0 for a NULL handle. */
SHBUF_API size_t shbuf_frontend_pages(const shbuf_frontend* frontend);

/* The first directory page's gref, the one the protocol carries (displif's
 * gref_directory); 0 for a NULL handle. */
SHBUF_API uint32_t shbuf_frontend_directory_gref(const shbuf_frontend* frontend);

/* Copies the buffer pages' grefs (ours, or in backend-allocated mode those the
 * backend wrote, once mapped) in page order into out[0..n-1], n =
 * shbuf_frontend_pages(); the caller owns `out`. Returns n.
 * Refuses: -EINVAL for a NULL out, or in backend-allocated mode when not
 * mapped; -ERANGE when count < n. */
SHBUF_API int shbuf_frontend_grefs(const shbuf_frontend* frontend, uint32_t* out, size_t count);

/* The message of the last failing call on this handle; "" if none yet or for
 * NULL. Valid until the next failing call on it or its free. */
SHBUF_API const char* shbuf_frontend_last_error(const shbuf_frontend* frontend);

/* ------------------------------------------------------------------------ */
/* Backend buffers */

struct shbuf_backend_config {
  /* sizeof(struct shbuf_backend_config). */
  size_t size;
  /* The frontend's domain id (0..65535). */
  uint32_t frontend;
  /* The first directory gref, as the protocol delivered it. */
  uint32_t directory_gref;
  /* Buffer size in pages, as the protocol delivered it; 1..max_pages. */
  size_t pages;
  /* enum shbuf_alloc_mode; 0: SHBUF_FRONTEND_ALLOC. */
  int mode;
  /* Larger requests are refused (-E2BIG) before anything is mapped;
   * 0: SHBUF_DEFAULT_MAX_PAGES. */
  size_t max_pages;
  /* enum shbuf_access: how the buffer is mapped (frontend-allocated) or
   * granted (backend-allocated); 0: read-write. */
  int access;
  /* enum shbuf_directory_read; 0: SHBUF_DIRECTORY_READ_AUTO. */
  int directory_read;
};

/* Attaches to a frontend's buffer through `provider`. Frontend-allocated: it
 * reads the directory chain one page at a time, stopping exactly at `pages`
 * grefs, and maps the buffer in one call. Backend-allocated: it grants
 * `pages` fresh zeroed pages to the frontend and writes their grefs into the
 * frontend's directory. Stores a new handle in *out (NULL on failure); the
 * caller owns it and releases it with shbuf_backend_detach().
 * Refuses: -EINVAL for 0 pages, directory gref 0, a bad struct size, mode,
 * access, directory_read or domain id; -E2BIG above max_pages; a bad
 * directory as the decoder does (-EBADMSG for a chain that ends early, does
 * not end or goes past its last page, -ELOOP, -EINVAL for gref 0); the
 * provider's errors (-EINVAL as gntdev reports every refusal: a gref never
 * granted, granted to another domain, a writable map of a read-only grant;
 * -ENOSPC when granting). On failure nothing stays granted or mapped. */
SHBUF_API int shbuf_backend_attach(shbuf_provider* provider,
                                   const struct shbuf_backend_config* config, shbuf_backend** out);

/* Unmaps the buffer or ends our grants, and destroys the handle whatever the
 * outcome; NULL is ignored (0). -EBUSY (backend-allocated): the frontend
 * still maps some page, kept by the provider until it unmaps. The message
 * goes to shbuf_last_error() and the provider, as for shbuf_frontend_free(). */
SHBUF_API int shbuf_backend_detach(shbuf_backend* backend);

/* The buffer's memory, shbuf_backend_size() bytes, valid until detach; owned
 * by the handle. NULL for a NULL handle. */
SHBUF_API void* shbuf_backend_data(const shbuf_backend* backend);

/* pages * SHBUF_PAGE_SIZE; 0 for a NULL handle. */
SHBUF_API size_t shbuf_backend_size(const shbuf_backend* backend);

/* The buffer's size in pages; 0 for a NULL handle. */
SHBUF_API size_t shbuf_backend_pages(const shbuf_backend* backend);

/* Copies the buffer pages' grefs (read from the directory, or granted by us)
 * into out[0..n-1], n = shbuf_backend_pages(); returns n.
 * Refuses: -EINVAL for a NULL out; -ERANGE when count < n. */
SHBUF_API int shbuf_backend_grefs(const shbuf_backend* backend, uint32_t* out, size_t count);

/* The message of the last failing call on this handle; "" if none yet or for
 * NULL. Valid until the next failing call on it or its detach. */
SHBUF_API const char* shbuf_backend_last_error(const shbuf_backend* backend);

/* ------------------------------------------------------------------------ */
/* The simulator */

/* Reads a sim instance's state without attaching to it (sim_path NULL or "":
 * the default instance) and stores the number of grant entries in use in all
 * its domains, pending ones included, in *grants, and the number of pages
 * mapped by any domain in *mappings. Both 0 means nothing is shared.
 * Refuses: -EINVAL for a NULL out-pointer; -ENOENT where there is no
 * instance; -EUCLEAN for a damaged one. */
SHBUF_API int shbuf_sim_usage(const char* sim_path, size_t* grants, size_t* mappings);

/* Removes every grant, mapping and page of a sim instance: the files the
 * simulator made, not the directory. Providers still attached see their next
 * operation fail. A missing instance is nothing to reset (0).
 * Refuses: -EINVAL (nothing removed) for a directory whose state is not a
 * simulator's owned by this user; -ENOTDIR. */
SHBUF_API int shbuf_sim_reset(const char* sim_path);

#ifdef __cplusplus
}
#endif

#endif /* SHBUF_H */
