// The text encodings (base64, base64url, percent, hex) live in oci/encoding.h, shared with
// http/ (Basic credentials, JWTs); adapters/ code names them here.
#pragma once

#include "oci/encoding.h"

namespace ocirelay::adapters {

using oci::base64_decode;
using oci::base64_encode;
using oci::base64url_decode;
using oci::base64url_encode;
using oci::hex_encode;
using oci::percent_encode;

}  // namespace ocirelay::adapters
