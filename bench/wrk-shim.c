/*
 * LD_PRELOAD shim that turns Debian's wrk into an mTLS load generator (built at bench
 * time by bench/tools.ts: gcc -O2 -shared -fPIC -o wrk-shim.so wrk-shim.c -ldl).
 *
 * - SSL_CTX_new: loads the client certificate chain and key named by BENCH_SHIM_CERT and
 *   BENCH_SHIM_KEY into every SSL_CTX wrk creates (wrk has no client-certificate option).
 * - SSL_clear: wrk reuses one SSL object per connection slot and calls SSL_shutdown +
 *   SSL_clear before reconnecting; OpenSSL keeps the last session on a cleanly shut down
 *   object, so the next SSL_connect would offer it and resume. With BENCH_SHIM_NO_RESUME=1
 *   the session is dropped, so every connection does a full handshake.
 * - SSL_connect: counts completed handshakes and resumed ones; the totals are printed to
 *   stderr at exit ("wrk-shim: handshakes=N resumed=M") so the harness can check them.
 *
 * The few OpenSSL prototypes are declared here and resolved with dlsym(RTLD_NEXT), so
 * building needs only gcc and libc headers, not libssl-dev.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_method_st SSL_METHOD;
typedef struct ssl_session_st SSL_SESSION;

#define SHIM_SSL_FILETYPE_PEM 1

static unsigned long shim_contexts, shim_handshakes, shim_resumed;
static int shim_no_resume = -1;

static void *shim_sym(const char *name) {
  void *p = dlsym(RTLD_NEXT, name);
  if (p == NULL) {
    fprintf(stderr, "wrk-shim: symbol %s not found (is wrk linked against libssl?)\n", name);
    exit(97);
  }
  return p;
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  static SSL_CTX *(*real)(const SSL_METHOD *);
  if (real == NULL) real = (SSL_CTX * (*)(const SSL_METHOD *)) shim_sym("SSL_CTX_new");
  SSL_CTX *ctx = real(method);
  if (ctx == NULL) return ctx;
  const char *cert = getenv("BENCH_SHIM_CERT");
  const char *key = getenv("BENCH_SHIM_KEY");
  if (cert != NULL && key != NULL) {
    int (*use_chain)(SSL_CTX *, const char *) = (int (*)(SSL_CTX *, const char *))shim_sym("SSL_CTX_use_certificate_chain_file");
    int (*use_key)(SSL_CTX *, const char *, int) = (int (*)(SSL_CTX *, const char *, int))shim_sym("SSL_CTX_use_PrivateKey_file");
    int (*check_key)(const SSL_CTX *) = (int (*)(const SSL_CTX *))shim_sym("SSL_CTX_check_private_key");
    if (use_chain(ctx, cert) != 1) {
      fprintf(stderr, "wrk-shim: cannot load certificate chain %s\n", cert);
      exit(98);
    }
    if (use_key(ctx, key, SHIM_SSL_FILETYPE_PEM) != 1 || check_key(ctx) != 1) {
      fprintf(stderr, "wrk-shim: cannot load private key %s (or it does not match the certificate)\n", key);
      exit(98);
    }
  }
  __atomic_add_fetch(&shim_contexts, 1, __ATOMIC_RELAXED);
  return ctx;
}

int SSL_connect(SSL *ssl) {
  static int (*real)(SSL *);
  static int (*reused)(const SSL *);
  if (real == NULL) {
    real = (int (*)(SSL *))shim_sym("SSL_connect");
    reused = (int (*)(const SSL *))shim_sym("SSL_session_reused");
  }
  int r = real(ssl);
  if (r == 1) {
    __atomic_add_fetch(&shim_handshakes, 1, __ATOMIC_RELAXED);
    if (reused(ssl)) __atomic_add_fetch(&shim_resumed, 1, __ATOMIC_RELAXED);
  }
  return r;
}

int SSL_clear(SSL *ssl) {
  static int (*real)(SSL *);
  static int (*set_session)(SSL *, SSL_SESSION *);
  if (real == NULL) {
    real = (int (*)(SSL *))shim_sym("SSL_clear");
    set_session = (int (*)(SSL *, SSL_SESSION *))shim_sym("SSL_set_session");
  }
  if (shim_no_resume < 0) {
    const char *v = getenv("BENCH_SHIM_NO_RESUME");
    shim_no_resume = v != NULL && strcmp(v, "1") == 0;
  }
  int r = real(ssl);
  if (shim_no_resume) set_session(ssl, NULL);
  return r;
}

__attribute__((destructor)) static void shim_report(void) {
  if (shim_contexts > 0) {
    fprintf(stderr, "wrk-shim: handshakes=%lu resumed=%lu\n", shim_handshakes, shim_resumed);
  }
}
