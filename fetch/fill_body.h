// A blob whose fill is still running, as an upload's body: the relay sends a blob to its
// destinations while it is being read from the source, each destination at its own pace
// (read once, write N). Reads follow the fill's file as it grows; the last byte is held
// back until the fill verified the digest, so no destination ever receives a complete
// blob that did not hash to its name.
#pragma once

#include <cstdint>
#include <memory>

#include "adapters/body_source.h"
#include "fetch/fetch_coalescer.h"

namespace ocirelay::fetch {

// `size`: the blob's size as its descriptor gives it. A failed fill fails the reads and
// waits with its error; a fill that ends short of `size` fails them with size_mismatch.
std::unique_ptr<adapters::BodySource> follow_fill(std::shared_ptr<BlobFill> fill, std::uint64_t size);

}  // namespace ocirelay::fetch
