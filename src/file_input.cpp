#include "file_input.h"

#include <fcntl.h>
#include <isa-l/crc64.h>
#include <isa-l/igzip_lib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "fvc/error.h"

namespace fvc::detail {
namespace {

// Large enough that system calls cost nothing next to inflating; small enough to stay in cache.
constexpr size_t kInputBytes = size_t{1} << 20;

bool starts_gzip_member(const unsigned char* bytes, size_t available) {
  return available >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

// zlib's words where it has them, so messages read as they did before ISA-L.
const char* inflate_reason(int code) {
  switch (code) {
    case ISAL_INVALID_BLOCK:
      return "invalid block type";
    case ISAL_INVALID_SYMBOL:
      return "invalid code in a compressed block";
    case ISAL_INVALID_LOOKBACK:
      return "invalid distance too far back";
    case ISAL_INVALID_WRAPPER:
      return "incorrect header check";
    case ISAL_UNSUPPORTED_METHOD:
      return "unknown compression method";
    case ISAL_INCORRECT_CHECKSUM:
      return "incorrect data check";
    case ISAL_NEED_DICT:
      return "stream needs a preset dictionary";
    default:
      return "unknown inflate error";
  }
}

}  // namespace

struct FileInput::Inflater {
  inflate_state state;
};

uint64_t crc64(uint64_t crc, const void* data, size_t size) {
  return crc64_ecma_refl(crc, static_cast<const unsigned char*>(data), size);
}

FileFingerprint fingerprint_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::unique_ptr<unsigned char[]> buffer(new unsigned char[kInputBytes]);
  FileFingerprint fingerprint;
  for (;;) {
    const ssize_t got = ::read(fd, buffer.get(), kInputBytes);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      const int error = errno;
      ::close(fd);
      throw DataError(fmt::format("{}: cannot read: {}", path, std::strerror(error)));
    }
    if (got == 0) {
      break;
    }
    fingerprint.size += static_cast<uint64_t>(got);
    fingerprint.crc64 = crc64(fingerprint.crc64, buffer.get(), static_cast<size_t>(got));
  }
  ::close(fd);
  return fingerprint;
}

FileInput::FileInput(const std::string& path, bool fingerprint)
    : path_(path), fingerprint_(fingerprint), in_(new unsigned char[kInputBytes]) {
  file_.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file_.fd < 0) {
    throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  }
  ::posix_fadvise(file_.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  struct stat info {};
  const uint64_t file_size =
      ::fstat(file_.fd, &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
  size_hint_ = file_size;

  refill();
  compressed_ = starts_gzip_member(in_.get() + in_begin_, in_end_ - in_begin_);
  if (!compressed_) {
    return;
  }
  // The last member's trailer holds its inflated size modulo 2^32: exact for a single member
  // under 4 GiB, as FER2013's is; a guess that is too small only costs regrowth.
  unsigned char trailer[4];
  if (file_size >= 4 && ::pread(file_.fd, trailer, 4, static_cast<off_t>(file_size - 4)) == 4) {
    const uint64_t recorded = uint64_t{trailer[0]} | uint64_t{trailer[1]} << 8 |
                              uint64_t{trailer[2]} << 16 | uint64_t{trailer[3]} << 24;
    size_hint_ = std::max(recorded, file_size);
  }
  inflater_ = std::make_unique<Inflater>();
  isal_inflate_init(&inflater_->state);
  inflater_->state.crc_flag = ISAL_GZIP;
}

FileInput::~FileInput() = default;

FileInput::Descriptor::~Descriptor() {
  if (fd >= 0) {
    ::close(fd);
  }
}

size_t FileInput::read(char* out, size_t size) {
  if (finished_ || size == 0) {
    return 0;
  }
  return compressed_ ? read_gzip(out, size) : read_plain(out, size);
}

size_t FileInput::read_file(char* out, size_t size) {
  size_t total = 0;
  while (total < size && !file_eof_) {
    const ssize_t got = ::read(file_.fd, out + total, size - total);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      throw DataError(fmt::format("{}: cannot read: {}", path_, std::strerror(errno)));
    }
    if (got == 0) {
      file_eof_ = true;
      break;
    }
    bytes_on_disk_ += static_cast<uint64_t>(got);
    if (fingerprint_) {
      crc_ = crc64(crc_, out + total, static_cast<size_t>(got));
    }
    total += static_cast<size_t>(got);
  }
  return total;
}

bool FileInput::refill() {
  if (in_begin_ > 0) {
    std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  const size_t got = read_file(reinterpret_cast<char*>(in_.get()) + in_end_, kInputBytes - in_end_);
  in_end_ += got;
  return got > 0;
}

size_t FileInput::read_plain(char* out, size_t size) {
  // The first bytes were read to look for a gzip header; hand them out first.
  size_t total = std::min(size, in_end_ - in_begin_);
  std::memcpy(out, in_.get() + in_begin_, total);
  in_begin_ += total;
  total += read_file(out + total, size - total);
  if (total == 0) {
    finished_ = true;
  }
  return total;
}

bool FileInput::start_next_member() {
  if (in_end_ - in_begin_ < 2) {
    refill();
  }
  if (!starts_gzip_member(in_.get() + in_begin_, in_end_ - in_begin_)) {
    // Not another member: the rest is ignored, as zlib does, but still read so that the
    // fingerprint covers the whole file.
    in_begin_ = in_end_ = 0;
    while (refill()) {
      in_begin_ = in_end_ = 0;
    }
    finished_ = true;
    return false;
  }
  isal_inflate_reset(&inflater_->state);
  inflater_->state.crc_flag = ISAL_GZIP;
  member_done_ = false;
  return true;
}

size_t FileInput::read_gzip(char* out, size_t size) {
  inflate_state& state = inflater_->state;
  size_t total = 0;
  while (total < size) {
    if (member_done_ && !start_next_member()) {
      break;
    }
    if (in_begin_ == in_end_) {
      refill();
    }
    state.next_in = in_.get() + in_begin_;
    state.avail_in = static_cast<uint32_t>(in_end_ - in_begin_);
    state.next_out = reinterpret_cast<uint8_t*>(out + total);
    state.avail_out =
        static_cast<uint32_t>(std::min<size_t>(size - total, std::numeric_limits<uint32_t>::max()));
    const size_t available = in_end_ - in_begin_;
    const uint32_t room = state.avail_out;

    const int code = isal_inflate(&state);
    if (code != ISAL_DECOMP_OK) {
      fail_inflate(code);
    }
    in_begin_ = in_end_ - state.avail_in;
    total += room - state.avail_out;
    if (state.block_state == ISAL_BLOCK_FINISH) {
      member_done_ = true;
      continue;
    }
    // Stuck without the end of the member: it needs bytes the file no longer has.
    const bool progressed = in_end_ - in_begin_ < available || state.avail_out < room;
    if (!progressed && !refill()) {
      throw DataError(fmt::format("{}: gzip stream ends early, expected a complete file", path_));
    }
  }
  return total;
}

void FileInput::fail_inflate(int code) const {
  throw DataError(fmt::format("{}: cannot decompress: {}", path_, inflate_reason(code)));
}

}  // namespace fvc::detail
