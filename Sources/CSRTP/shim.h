// System libsrtp2 (Debian libsrtp2-dev) for SRTP/SRTCP in the media edge.
#ifndef SWITCHBOARD_CSRTP_SHIM_H
#define SWITCHBOARD_CSRTP_SHIM_H

#include <srtp2/srtp.h>
#include <srtp2/cipher.h>  // srtp_replace_cipher_type: OpenSSL behind the AES ciphers (SRTPCrypto)
#include <srtp2/auth.h>    // srtp_replace_auth_type: OpenSSL behind HMAC-SHA1

#endif
