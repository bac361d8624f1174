// System OpenSSL (Debian libssl-dev) for DTLS 1.2 (the DTLS target). Functions that are
// macros in OpenSSL's headers get a static inline wrapper Swift can call.
#ifndef SWITCHBOARD_CSSL_SHIM_H
#define SWITCHBOARD_CSSL_SHIM_H

#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static inline long switchboard_DTLS_set_link_mtu(SSL *ssl, long mtu) { return DTLS_set_link_mtu(ssl, mtu); }
static inline long switchboard_SSL_set_options(SSL *ssl, unsigned long options) { return (long)SSL_set_options(ssl, options); }
static inline unsigned long switchboard_SSL_OP_NO_QUERY_MTU(void) { return SSL_OP_NO_QUERY_MTU; }
static inline unsigned long switchboard_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline int switchboard_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int switchboard_DTLS1_2_VERSION(void) { return DTLS1_2_VERSION; }
static inline long switchboard_DTLSv1_get_timeout(SSL *ssl, struct timeval *tv) { return DTLSv1_get_timeout(ssl, tv); }
static inline long switchboard_DTLSv1_handle_timeout(SSL *ssl) { return DTLSv1_handle_timeout(ssl); }
static inline long switchboard_BIO_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }
static inline int switchboard_BIO_reset(BIO *bio) { return (int)BIO_reset(bio); }
static inline long switchboard_BIO_set_mem_eof_return(BIO *bio, long value) { return BIO_set_mem_eof_return(bio, value); }
static inline void switchboard_OPENSSL_free(void *pointer) { OPENSSL_free(pointer); }
static inline int switchboard_SSL_ERROR_WANT_READ(void) { return SSL_ERROR_WANT_READ; }

#endif
