// RADOS copy-from for the RBD backstore: librados has the operation only in its C++
// API, so this takes the C handles the Rust side holds and runs one object copy.
//
// The copy is done by the OSDs: the destination's primary reads the source object
// (at `src_snap`, or the head with LIBRADOS_SNAP_HEAD) and replaces the destination
// object with it, data, xattrs and omap. The destination's snapshot context is passed
// explicitly so that objects with snapshots are cloned before they are overwritten.

#include <rados/librados.h>
#include <rados/librados.hpp>

#include <cerrno>
#include <exception>
#include <string>
#include <vector>

extern "C" int oxtgt_rados_copy_from(rados_ioctx_t dst_io, const char *dst_oid,
                                     rados_ioctx_t src_io, const char *src_oid,
                                     uint64_t src_snap, uint64_t snap_seq,
                                     const uint64_t *snaps, size_t nsnaps) {
  try {
    librados::IoCtx dst, src_shared, src;
    librados::IoCtx::from_rados_ioctx_t(dst_io, dst);
    librados::IoCtx::from_rados_ioctx_t(src_io, src_shared);
    // The read snapshot is per IoCtx: a private copy leaves the caller's alone.
    src.dup(src_shared);
    src.snap_set_read(src_snap);

    librados::ObjectWriteOperation op;
    op.copy_from(src_oid, src, 0,
                 LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL | LIBRADOS_OP_FLAG_FADVISE_NOCACHE);
    std::vector<librados::snap_t> sv(snaps, snaps + nsnaps);
    librados::AioCompletion *c = librados::Rados::aio_create_completion();
    int r = dst.aio_operate(dst_oid, c, &op, snap_seq, sv);
    if (r == 0) {
      c->wait_for_complete();
      r = c->get_return_value();
    }
    c->release();
    return r;
  } catch (const std::bad_alloc &) {
    return -ENOMEM;
  } catch (...) {
    return -EIO;
  }
}
